"""report.md: a run folder rendered for people choosing route styles and database drivers.

``write_report`` reads a run folder (``results.read_run``, so a partial run or a torn last
line is fine), judges the findings, draws the plots and writes ``report.md`` next to them.
``render_report`` is the pure part: run.json, the records, the verdicts and the plot paths
in, Markdown out. Plots are linked by file name: the report lives in the same folder.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from app.catalogue import ARTICLE_CASES, WORKLOADS
from loadtests.compare import ComparisonResult, compare_runs, load_run
from loadtests.findings import MAX_ERROR_SHARE, Verdict, evaluate_all, required_failures
from loadtests.plots import (
    PING,
    SWEEP_P99,
    SWEEP_THROUGHPUT,
    THROUGHPUT,
    draw_plots,
    main_records,
    ordered_by_workload,
    pools_of,
    style_rank,
    sweep_records,
    threadpool_of,
)
from loadtests.results import REPORT, read_run

MARKERS = {"pass": "PASS", "fail": "FAIL", "inconclusive": "INCONCLUSIVE", "not measured": "NOT MEASURED"}

#: The article's four cases (S = 3 s, ab -n 200 -c 100, AnyIO's 40 threads): rps as published.
ARTICLE_RPS = {1: 5.53, 2: 0.17, 3: 11.06, 4: 8.29}
ARTICLE_STYLES = {1: "sync", 2: "async-blocking", 3: "async", 4: "threadpool"}
#: The same four styles on real Postgres: ``SELECT pg_sleep(S)`` through psycopg2 and asyncpg.
PG_SLEEP_TWINS = {
    1: "pg_sleep/sync/psycopg2",
    2: "pg_sleep/async-blocking/psycopg2",
    3: "pg_sleep/async/asyncpg",
    4: "pg_sleep/threadpool/psycopg2",
}
WAIT_CASES = {number: case for case, number in ARTICLE_CASES.items()}

PLOT_CAPTIONS = {
    THROUGHPUT: "Throughput per case (bars measured, diamonds predicted), grouped by workload",
    PING: "/ping p90 latency while each case ran: a long bar means the event loop was frozen (or the CPU saturated)",
    SWEEP_THROUGHPUT: "Throughput vs concurrency for the swept cases, with the threadpool and pool sizes",
    SWEEP_P99: "p99 latency vs concurrency for the swept cases",
}

LOW_EFFICIENCY, HIGH_EFFICIENCY, CPU_BUSY = 0.5, 1.5, 0.85
#: A predicted ratio this close to a finding's threshold (relative) leaves the verdict to noise.
BORDERLINE = 0.1


# --- formatting --------------------------------------------------------------------------------


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def fmt_quantity(value: float | None) -> str:
    """Three significant figures or so, thousands separated: requests per second and milliseconds alike."""
    if _missing(value):
        return "-"
    assert value is not None
    if value >= 100:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


fmt_rps = fmt_ms = fmt_quantity


def fmt_ratio(value: float | None) -> str:
    if _missing(value):
        return "-"
    assert value is not None
    if math.isinf(value):
        return "inf"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def fmt_pct(value: float | None) -> str:
    return "-" if _missing(value) else f"{value:.0%}"


def cell(text: Any) -> str:
    """Text safe inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    """A Markdown table; ``align`` has one letter per column, l or r."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


# --- reading records ---------------------------------------------------------------------------


def ab(record: dict[str, Any] | None) -> dict[str, Any]:
    return (record or {}).get("ab") or {}


def model(record: dict[str, Any] | None) -> dict[str, Any]:
    return (record or {}).get("model") or {}


def rps(record: dict[str, Any] | None) -> float | None:
    return ab(record).get("requests_per_second")


def failures(record: dict[str, Any]) -> int | None:
    result = ab(record)
    if not result:
        return None
    return int(result.get("failed") or 0) + int(result.get("non_2xx") or 0)


def driver_label(record: dict[str, Any]) -> str:
    twin = record.get("twin")
    return f"{record.get('driver')} + {twin}" if twin else str(record.get("driver"))


def note(record: dict[str, Any]) -> str:
    """Why a measurement is far from its prediction, or what went wrong with it."""
    if record.get("error"):
        return "error: " + shorten(str(record["error"]), 140)
    notes = []
    bad, asked = failures(record), ab(record).get("requests") or record.get("requests") or 0
    if bad:
        share = bad / asked if asked else 1.0
        tail = ": throughput not meaningful" if share > MAX_ERROR_SHARE else ""
        notes.append(f"{bad} failed/non-2xx ({share:.1%}){tail}")
    efficiency, cpu, bound = record.get("efficiency"), record.get("cpu_utilisation"), model(record).get("bound")
    c, tokens = record.get("concurrency"), record.get("threadpool_tokens")
    if efficiency is not None and efficiency < LOW_EFFICIENCY:
        if cpu is not None and cpu > CPU_BUSY:
            notes.append(f"CPU-bound: the server kept {cpu:.0%} of a core busy, so its {bound} bound is never reached")
        elif bound == "threadpool":
            notes.append(f"threadpool knee: {c} clients queue for {tokens} threads, and each hand-off costs more than W shows")
        elif bound and bound.startswith("pool"):
            notes.append(f"pool knee: clients queue for the {bound.removeprefix('pool ')} pool's connections; "
                         "acquiring under contention costs more than W shows")
        elif bound == "event loop":
            notes.append("the blocked loop also delays accepting and answering, beyond the blocking call itself")
        elif bound == "cpu":
            notes.append("slower than its CPU cost allows: the cores are shared with Postgres and ab")
        else:
            notes.append(f"far below the {bound} bound: something the model does not count binds "
                         "(CPU, the GIL, Postgres, ab on the same cores)")
    elif efficiency is not None and efficiency > HIGH_EFFICIENCY:
        notes.append(f"faster than predicted: W, measured with one client and a new connection per request, "
                     f"overstates how long the {bound} is held")
    return "; ".join(notes)


# --- sections ----------------------------------------------------------------------------------


def _profile(run: dict[str, Any]) -> dict[str, Any]:
    return run.get("profile") or {}


def _server(run: dict[str, Any]) -> dict[str, Any]:
    servers = run.get("servers") or []
    return servers[0] if servers else {}


def _pools_text(run: dict[str, Any]) -> str:
    pools = {name: info.get("max") for name, info in (_server(run).get("pools") or {}).items() if isinstance(info, dict)}
    sizes = {size for size in pools.values() if size}
    if len(sizes) == 1:
        return f"a pool of at most {sizes.pop()} connections per pooled driver"
    if sizes:
        return "connection pools of " + ", ".join(f"{name} {size}" for name, size in sorted(pools.items()) if size)
    size = _profile(run).get("pool_max")
    return f"a pool of at most {size} connections per pooled driver" if size else "pool sizes not recorded"


def partial_note(run: dict[str, Any], records: list[dict[str, Any]]) -> str | None:
    planned, status = run.get("planned"), run.get("status")
    if isinstance(planned, int) and planned > len(records):
        text = f"partial run: {len(records)} of {planned} planned cases measured"
    elif status and status != "complete":
        text = f"partial run: {len(records)} cases measured" + (f" of {planned} planned" if planned else "")
    else:
        return None
    return text + (f" (status: {status})" if status else "")


def header_section(run: dict[str, Any], records: list[dict[str, Any]], verdicts: list[Verdict]) -> list[str]:
    profile, environment, server = _profile(run), run.get("environment") or {}, _server(run)
    name = profile.get("name") or "unnamed profile"
    date = environment.get("date") or run.get("started") or "an unrecorded date"
    lines = [f"# iobench run: {name} profile, {str(date)[:10]}", ""]
    if (partial := partial_note(run, records)) is not None:
        lines += [f"> **{partial}.** Everything below is what was measured before the run stopped; "
                  "findings whose cases are missing say NOT MEASURED.", ""]
    if run.get("error"):
        lines += [f"> The run stopped with an error: {shorten(str(run['error']), 600)}", ""]
    seconds, c = profile.get("seconds"), profile.get("concurrency")
    tokens = server.get("threadpool_tokens") or profile.get("threadpool_tokens")
    sweeps = sum(1 for record in records if record.get("sweep"))
    commit = environment.get("git_commit") or "an unrecorded commit"
    description = f": {profile['description'].rstrip('.')}" if profile.get("description") else ""
    lines += [
        f"**What this run is.** Profile **{name}**{description}. "
        f"Each request waits or queries twice, with S = {seconds if seconds is not None else '?'} s per wait "
        f"(the article: 3 s); ab kept c = {c if c is not None else '?'} clients busy (the article: 100); "
        f"FastAPI's threadpool had {tokens if tokens is not None else '?'} tokens (AnyIO's default, the article's: 40) "
        f"and the service {_pools_text(run)}. "
        f"Started {run.get('started') or date}, finished {run.get('finished') or 'not yet'}, at commit `{commit}`"
        f" on {environment.get('cpu_count') or '?'} CPUs. "
        f"It holds {len(records)} measurements: {len(records) - sweeps} of cases at the profile's concurrency "
        f"and {sweeps} sweep points. The service's database is {environment.get('database_source') or 'not recorded'}.",
        "",
    ]
    if run.get("command"):
        command = run["command"] if isinstance(run["command"], str) else " ".join(map(str, run["command"]))
        lines += [f"Command: `{command}`", ""]
    failing = required_failures(verdicts)
    if failing:
        lines += [f"**Run verdict: {len(failing)} required finding(s) failed or could not be judged:** "
                  + ", ".join(f"{v.finding.id} ({MARKERS[v.status]})" for v in failing) + ".", ""]
    elif verdicts:
        not_measured = [v.finding.id for v in verdicts if v.finding.required and v.status == "not measured"]
        tail = f" ({len(not_measured)} not measured in this run)" if not_measured else ""
        lines += [f"**Run verdict: every required finding measured holds{tail}.**", ""]
    return lines


def _value_text(value: float | None, metric: str) -> str:
    if _missing(value):
        return "no result"
    return f"{fmt_rps(value)} rps" if metric == "rps" else f"{fmt_ms(value)} ms median /ping"


def _case_facts(record: dict[str, Any] | None) -> str:
    if record is None:
        return "not measured"
    facts = [f"c = {record.get('concurrency')}"]
    if model(record).get("bound"):
        facts.append(f"bound by {model(record)['bound']} at {fmt_rps(model(record).get('rps'))} rps")
    if record.get("efficiency") is not None:
        facts.append(f"efficiency {fmt_pct(record['efficiency'])}")
    if record.get("cpu_utilisation") is not None:
        facts.append(f"server CPU {fmt_pct(record['cpu_utilisation'])}")
    if (bad := failures(record)):
        facts.append(f"{bad} failed/non-2xx")
    if record.get("error"):
        facts.append("error: " + shorten(str(record["error"]), 200))
    return ", ".join(facts)


def findings_section(records: list[dict[str, Any]], verdicts: list[Verdict]) -> list[str]:
    lines = ["## Findings", ""]
    if not verdicts:
        return lines + ["No findings were evaluated.", ""]
    required = [v for v in verdicts if v.finding.required]
    others = [v for v in verdicts if not v.finding.required]

    def count(group: list[Verdict]) -> str:
        parts = [f"{sum(v.status == s for v in group)} {MARKERS[s].lower()}" for s in MARKERS
                 if any(v.status == s for v in group)]
        return ", ".join(parts) or "none"

    lines += [
        "Each finding is one of the article's claims, checked as a ratio of two cases' measurements. "
        "Required findings are the architecture rules a team relies on; the others are claims that may not "
        "carry over from sleeps to real drivers, measured with the same care but never tuned to pass.",
        "",
        f"Required: {count(required)}. Not required: {count(others)}.",
        "",
    ]
    rows = []
    for v in verdicts:
        reason = v.reason if v.status in ("pass", "not measured") else shorten(v.reason, 160)
        marker = MARKERS[v.status]
        rows.append([v.finding.id, v.finding.claim, f"**{marker}**" if v.status == "fail" and v.finding.required else marker,
                     fmt_ratio(v.ratio), fmt_ratio(v.predicted_ratio), "yes" if v.finding.required else "no", reason])
    lines += table(["Finding", "Claim", "Verdict", "Measured ratio", "Predicted ratio", "Required", "Reason"], rows,
                   "lllrrll")
    lines.append("")
    troubled = [v for v in verdicts if v.status in ("fail", "inconclusive")]
    if troubled:
        latest = {record["case"]: record for record in main_records(records)}
        lines += ["### Failed and inconclusive findings", ""]
        for v in troubled:
            f = v.finding
            num, den = latest.get(f.numerator), latest.get(f.denominator)
            text = [f"**{f.id}: {f.title}** ({MARKERS[v.status]}, {'required' if f.required else 'not required'})."]
            if v.numerator is not None or v.denominator is not None:
                text.append(f"`{f.numerator}` measured {_value_text(v.numerator, f.metric)} and `{f.denominator}` "
                            f"{_value_text(v.denominator, f.metric)}" + (f": ratio {fmt_ratio(v.ratio)}" if v.ratio is not None else "")
                            + f"; the claim needs {f.op} {f.threshold:g}.")
            else:
                text.append(f"The claim needs the ratio {f.op} {f.threshold:g}.")
            if v.predicted_ratio is not None:
                holds = v.predicted_ratio >= f.threshold if f.op == ">=" else v.predicted_ratio <= f.threshold
                text.append(f"Little's law predicts a ratio of {fmt_ratio(v.predicted_ratio)}, so in theory the claim "
                            f"{'holds' if holds else 'does not hold'} here")
                if abs(v.predicted_ratio - f.threshold) <= BORDERLINE * f.threshold:
                    text[-1] += (f", but only just: the prediction is within {BORDERLINE:.0%} of the threshold, "
                                 "so measurement noise decides the verdict")
                text[-1] += "."
            text.append(f"`{f.numerator}`: {_case_facts(num)}. `{f.denominator}`: {_case_facts(den)}.")
            text.append(f"The article: {f.article}.")
            text.append(f"Reason: {v.reason}")
            lines += [" ".join(text), ""]
    return lines


def article_section(run: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    latest = {record["case"]: record for record in main_records(records)}
    if not any(case in latest for case in [*WAIT_CASES.values(), *PG_SLEEP_TWINS.values()]):
        return ["## The article's four cases", "", "None of the article's cases or their pg_sleep twins were measured.", ""]
    profile = _profile(run)
    base = {"wait": latest.get(WAIT_CASES[1]), "twin": latest.get(PG_SLEEP_TWINS[1])}

    def ratio(record: dict[str, Any] | None, to: dict[str, Any] | None, value: Any = rps) -> float | None:
        a, b = value(record), value(to)
        return a / b if a and b else None

    def predicted(record: dict[str, Any] | None) -> float | None:
        return model(record).get("rps")

    rows = []
    for number in (1, 2, 3, 4):
        wait, twin = latest.get(WAIT_CASES[number]), latest.get(PG_SLEEP_TWINS[number])
        rows.append([
            f"{number}: {ARTICLE_STYLES[number]}", f"{ARTICLE_RPS[number]:g}", fmt_ratio(ARTICLE_RPS[number] / ARTICLE_RPS[1]),
            f"`{WAIT_CASES[number]}`", fmt_rps(rps(wait)), fmt_ratio(ratio(wait, base["wait"])),
            fmt_ratio(ratio(wait, base["wait"], predicted)),
            f"`{PG_SLEEP_TWINS[number]}`", fmt_rps(rps(twin)), fmt_ratio(ratio(twin, base["twin"])),
            fmt_ratio(ratio(twin, base["twin"], predicted)),
        ])
    seconds, c = profile.get("seconds"), profile.get("concurrency")
    return [
        "## The article's four cases", "",
        "The article's routes sleep 3 s twice per request under `ab -n 200 -c 100` with AnyIO's 40 threads. "
        f"This run uses S = {seconds if seconds is not None else '?'} s and c = {c if c is not None else '?'}, "
        "so its absolute numbers differ by design: throughput scales as min(c, capacity) / W. "
        "**Compare the ratios to case 1**, measured and predicted. The pg_sleep twins are the same four styles with the "
        "wait done by Postgres (`SELECT pg_sleep(S)`) through psycopg2, and asyncpg where the article awaits.",
        "",
        *table(["Article case", "Article rps", "Article / case 1", "Sleep case", "rps", "/ case 1", "predicted / case 1",
                "pg_sleep twin", "rps", "/ case 1", "predicted / case 1"], rows, "lrrlrrrlrrr"),
        "",
    ]


SCENARIO_HEADER = ["Case", "Style", "Driver", "c", "n", "rps", "predicted rps", "bound", "efficiency", "mean ms", "p50 ms",
                   "p99 ms", "/ping p50 / p90 ms", "failures", "note"]
SCENARIO_ALIGN = "lllrrrrlrrrrrrl"


def _ping_cell(record: dict[str, Any]) -> str:
    ping = record.get("ping") or {}
    return f"{fmt_ms(ping.get('p50_ms'))} / {fmt_ms(ping.get('p90_ms'))}"


def _scenario_row(record: dict[str, Any]) -> list[Any]:
    result, predicted = ab(record), model(record)
    return [
        f"`{record['case']}`", record.get("style") or "-", driver_label(record), record.get("concurrency") or "-",
        result.get("requests") or record.get("requests") or "-", fmt_rps(rps(record)), fmt_rps(predicted.get("rps")),
        predicted.get("bound") or "-", fmt_pct(record.get("efficiency")), fmt_ms(result.get("mean_ms")),
        fmt_ms(result.get("p50_ms")), fmt_ms(result.get("p99_ms")), _ping_cell(record),
        "-" if failures(record) is None else failures(record), note(record),
    ]


def scenarios_section(records: list[dict[str, Any]]) -> list[str]:
    main = main_records(records)
    lines = ["## All scenarios", ""]
    if not main:
        return lines + ["No case was measured.", ""]
    lines += ["One table per workload, fastest first within each route style. *bound* is the resource Little's law says "
              "limits the case; *efficiency* is measured / predicted throughput; *failures* counts ab's failed and "
              "non-2xx responses. Notes explain efficiencies below 50% or above 150%, and errors.", ""]
    descriptions = {workload.name: workload.description for workload in WORKLOADS}
    for workload, group in ordered_by_workload(main):
        group = sorted(group, key=lambda r: (style_rank(r.get("style")), -(rps(r) or 0.0), r["case"]))
        title = f"### {workload}" + (f": {descriptions[workload]}" if workload in descriptions else "")
        lines += [title, "", *table(SCENARIO_HEADER, [_scenario_row(r) for r in group], SCENARIO_ALIGN), ""]
    extras = [record for record in records if record.get("for_finding")]
    if extras:
        lines += ["### Extra measurements for findings", "",
                  "Cases some findings judge at their own concurrency (see the finding's claim).", "",
                  *table(SCENARIO_HEADER, [_scenario_row(r) for r in extras], SCENARIO_ALIGN), ""]
    return lines


def sweeps_section(run: dict[str, Any], records: list[dict[str, Any]], plots: list[Path]) -> list[str]:
    sweeps = sweep_records(records)
    if not sweeps:
        return []
    lines = ["## Sweeps", "",
             "The same case at growing concurrency. Throughput should grow with c until a resource saturates "
             "(the model's knee, at c = its capacity), then stay flat while latency climbs.", ""]
    rows, summaries = [], []
    for case, points in sorted(sweeps.items()):
        for record in points:
            rows.append([f"`{case}`", record.get("concurrency"), fmt_rps(rps(record)), fmt_rps(model(record).get("rps")),
                         model(record).get("bound") or "-", fmt_pct(record.get("efficiency")), fmt_ms(ab(record).get("p99_ms")),
                         fmt_ms((record.get("ping") or {}).get("p90_ms")),
                         "-" if failures(record) is None else failures(record), note(record)])
        measured = [r for r in points if rps(r)]
        if measured:
            best = max(measured, key=lambda r: rps(r) or 0.0)
            last = model(points[-1])
            sizes = [f"threadpool = {threadpool_of(run, points[-1])}"] if threadpool_of(run, points[-1]) else []
            sizes += [f"{driver} pool = {size}" for driver, size in pools_of(run, points[-1]).items()]
            knee = (f"the model's knee is at c = {last['capacity']:.0f} ({last['bound']})"
                    if last.get("bound") and last["bound"] != "clients" and last.get("capacity")
                    else "the model sees no knee within the levels swept")
            summaries.append(f"- `{case}` peaks at {fmt_rps(rps(best))} rps at c = {best.get('concurrency')}; {knee}"
                             + (f" ({', '.join(sizes)})." if sizes else "."))
    lines += summaries + [""]
    lines += table(["Case", "c", "rps", "predicted rps", "bound", "efficiency", "p99 ms", "/ping p90 ms", "failures", "note"],
                   rows, "lrrrlrrrrl")
    names = {path.name for path in plots}
    links = [f"[{PLOT_CAPTIONS[name].split(' for ')[0]}]({name})" for name in (SWEEP_THROUGHPUT, SWEEP_P99) if name in names]
    if links:
        lines += ["", "Plots: " + ", ".join(links) + "."]
    return lines + [""]


def plots_section(plots: list[Path], plot_error: str | None = None) -> list[str]:
    lines = ["## Plots", ""]
    if plot_error:
        lines += [f"The plots could not be drawn: {plot_error}", ""]
    if not plots:
        return lines + (["No plot: nothing measured has the data for one.", ""] if not plot_error else [])
    for path in plots:
        caption = PLOT_CAPTIONS.get(path.name, path.stem)
        lines += [f"**{caption}.**", "", f"![{caption}]({path.name})", ""]
    return lines


def environment_section(run: dict[str, Any]) -> list[str]:
    environment, server = run.get("environment") or {}, _server(run)
    database = server.get("database") or {}
    if database.get("error"):
        postgres = f"unknown ({database['error']})"
    elif database:
        postgres = f"{database.get('server_version') or '?'}, max_connections = {database.get('max_connections') or '?'}"
    else:
        postgres = "not recorded"
    memory = f", {environment['memory_gib']} GiB RAM" if environment.get("memory_gib") else ""
    libraries = server.get("libraries") or {}
    pools = {name: info.get("max") for name, info in (server.get("pools") or {}).items() if isinstance(info, dict)}
    servers = run.get("servers") or []
    shapes = {(s.get("threadpool_tokens"), s.get("workers"), s.get("event_loop")) for s in servers}
    rows = [
        ["Date", environment.get("date") or run.get("started") or "-"],
        ["Machine", f"{environment.get('cpu_count') or '?'} CPUs{memory}; {environment.get('platform') or '?'}"],
        ["Load average at start", ", ".join(f"{x:.2f}" for x in environment["load_average"])
         if environment.get("load_average") else "-"],
        ["Python", f"{environment.get('python') or server.get('python') or '?'}"
         + (f" ({server['implementation']})" if server.get("implementation") else "")],
        ["Event loop", server.get("event_loop") or "-"],
        ["Workers", server.get("workers") or "-"],
        ["Threadpool tokens", server.get("threadpool_tokens") or "-"],
        ["Pool max per driver", ", ".join(f"{name} {size}" for name, size in sorted(pools.items())) or "-"],
        ["Postgres", postgres],
        ["Database source", environment.get("database_source") or "-"],
        ["ApacheBench", environment.get("ab_version") or "-"],
        ["Git commit", f"`{environment['git_commit']}`" if environment.get("git_commit") else "-"],
        ["Servers started", f"{len(servers)}" + ("" if len(shapes) <= 1 else " (with different threadpool, workers or loop)")],
        ["Libraries", ", ".join(f"{name} {version or 'not installed'}" for name, version in libraries.items()) or "-"],
    ]
    return ["## Environment", "", *table(["Item", "Value"], rows), ""]


HOW_TO_READ = [
    "## How to read this",
    "",
    "- **Little's law**: in a steady state, the requests in service L equal throughput X times the time each spends, W: L = X W.",
    "- A resource with N slots, each held t seconds per request, serves at most N / t requests per second; c clients each "
    "waiting W can offer at most c / W. So **X = min(c, capacity) / W**, where capacity is the number of requests the "
    "scarcest resource lets run at once: threadpool tokens for a `def` route, 1 for an `async def` route that blocks its "
    "loop, the pool size for an async driver, twice the tokens for case 4, which holds a thread for only half of W.",
    "- W is measured with one client (the uncontended latency); *bound* names the resource that gives the smallest N / t.",
    "- **Efficiency** = measured / predicted throughput: near 100% means the model explains the case; far below means "
    "something it does not count binds (CPU, the GIL, Postgres or ab sharing the cores, errors); far above means W "
    "overstated how long the resource is held.",
    "- **/ping p50 / p90**: a side client calls `/ping` every 50 ms during each case; when it waits as long as a blocking "
    "step, the event loop was frozen and every request on that worker waited with it. When the server's CPU is saturated, "
    "/ping queues for the CPU whatever the route style: compare cases at a load the server can carry.",
    "",
]


def compare_section(compare: ComparisonResult) -> list[str]:
    lines = [f"## Compared with {compare.old_label}", ""]
    regressions, findings = compare.regressions, compare.finding_regressions
    improvements = [row for row in compare.rows if row.status == "improvement"]
    lines += [
        f"{len(regressions)} case(s) regressed (throughput down by more than {compare.tolerance:.0%} or no result), "
        f"{len(improvements)} improved; {len(findings)} finding(s) went from pass to fail.",
        "",
    ]
    order = {"regression": 0, "improvement": 1, "new": 2, "gone": 3, "same": 4}
    rows = []
    for row in sorted(compare.rows, key=lambda r: (order[r.status], r.case)):
        status = "**REGRESSION**" if row.regression else row.status
        change = "-" if row.change_pct is None else f"{row.change_pct:+.0f}%"
        rows.append([f"`{row.case}`", fmt_rps(row.old_rps), fmt_rps(row.new_rps), change, status, row.note])
    lines += table(["Case", "Old rps", "New rps", "Change", "Status", "Note"], rows, "lrrrll") + [""]
    if compare.verdict_changes:
        rows = [[change.id, MARKERS[change.old], MARKERS[change.new], "yes" if change.required else "no",
                 "**REGRESSION**" if change.regression else ("improvement" if change.improvement else "changed")]
                for change in compare.verdict_changes]
        lines += ["Findings whose verdict changed:", "",
                  *table(["Finding", "Old", "New", "Required", "Status"], rows), ""]
    else:
        lines += ["No finding changed its verdict.", ""]
    return lines


# --- entry points ------------------------------------------------------------------------------


def render_report(
    run: dict[str, Any],
    records: list[dict[str, Any]],
    verdicts: list[Verdict],
    plots: list[Path],
    compare: ComparisonResult | None = None,
    *,
    plot_error: str | None = None,
) -> str:
    """The Markdown report of one run; plots are linked by file name, relative to the report."""
    lines = [
        *header_section(run, records, verdicts),
        *findings_section(records, verdicts),
        *article_section(run, records),
        *scenarios_section(records),
        *sweeps_section(run, records, plots),
        *plots_section(plots, plot_error),
        *environment_section(run),
        *HOW_TO_READ,
    ]
    if compare is not None:
        lines += compare_section(compare)
    return "\n".join(lines).rstrip() + "\n"


def write_report(folder: Path, compare_with: Path | None = None) -> Path:
    """Render ``folder``'s report.md (and its plots) from run.json and results.jsonl; returns its path."""
    folder = Path(folder)
    run, records = read_run(folder)
    verdicts = evaluate_all(records)
    plot_error = None
    try:
        plots = draw_plots(folder, run, records)
    except Exception as exc:  # noqa: BLE001 - a broken plot must not cost the run its report
        plots, plot_error = [], f"{type(exc).__name__}: {exc}"
    compare = None
    if compare_with is not None:
        _, old_records = load_run(Path(compare_with))
        compare = compare_runs(records, old_records, old_label=f"`{compare_with}`", new_label=f"`{folder}`")
    path = folder / REPORT
    path.write_text(render_report(run, records, verdicts, plots, compare, plot_error=plot_error), encoding="utf-8")
    return path

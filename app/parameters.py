"""Query parameters of each workload, bounded by the settings.

They are ``async def`` dependencies on purpose: FastAPI runs a plain ``def`` dependency in the
threadpool, which would add a thread hop to every route and blur the styles being compared.
"""


import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Query

from app.data_folder import FILE_NAME, SMALL_FILE, resolve_data_file
from app.settings import Settings

Params = dict[str, Any]
ParamsDependency = Callable[..., Awaitable[Params]]
PG_INT_MAX = 2**31 - 1


def workload_parameters(settings: Settings) -> dict[str, ParamsDependency]:
    """One dependency per workload name, returning the keyword arguments of its driver call."""

    async def seconds(
        seconds: Annotated[
            float,
            Query(ge=0, le=settings.max_wait_seconds, allow_inf_nan=False,
                  description=f"S, the length of each of the two waits (0..{settings.max_wait_seconds})."),
        ] = settings.default_wait_seconds,
    ) -> Params:
        return {"seconds": seconds}

    async def lookup(
        id: Annotated[int | None, Query(ge=1, le=PG_INT_MAX, description="Item id; random in 1..seed_rows if absent.")] = None,
    ) -> Params:
        return {"item_id": id if id is not None else random.randint(1, settings.seed_rows)}

    async def report(
        category: Annotated[
            int | None, Query(ge=0, lt=settings.categories, description="Category to aggregate; random if absent.")
        ] = None,
    ) -> Params:
        return {"category": category if category is not None else random.randrange(settings.categories)}

    async def write(
        slot: Annotated[
            int | None, Query(ge=0, lt=settings.write_slots, description="Row to upsert; random if absent.")
        ] = None,
        # Postgres text cannot hold NUL (every driver raises on it), so it is refused up front as a 422.
        note: Annotated[
            str, Query(max_length=200, pattern=r"^[^\x00]*$", description="Text stored in the row, as a bound value (no NUL).")
        ] = "iobench",
    ) -> Params:
        return {"slot": slot if slot is not None else random.randrange(settings.write_slots), "note": note}

    async def file(
        name: Annotated[
            str,
            Query(
                min_length=1, max_length=255,
                description="A file name in the data folder, e.g. small.bin or large.bin.",
                # Documented only: resolve_data_file checks it, with a message that quotes the name.
                json_schema_extra={"pattern": f"^{FILE_NAME.pattern}$"},
            ),
        ] = SMALL_FILE,
    ) -> Params:
        return {"path": resolve_data_file(settings.data_dir, name)}

    return {"wait": seconds, "pg_sleep": seconds, "lookup": lookup, "report": report, "write": write, "file": file}

"""The SQL every driver runs, written once with ``:name`` parameters.

Each driver wants its own placeholder style (psycopg ``%(name)s``, asyncpg ``$1``,
SQLAlchemy ``:name``); converting one source keeps the drivers honest: they all run
exactly the same statement, always with bound parameters, never string formatting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_PARAM = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
# SQLAlchemy's text() does not see ``:name::type`` as a parameter (a name followed by a colon
# is not one to it); ``:name\:\:type`` is, and it unescapes ``\:`` back to ``:``.
_PARAM_CAST = re.compile(r"((?<![:\w]):[A-Za-z_]\w*)::")


@dataclass(frozen=True)
class Query:
    """One statement in the placeholder styles the drivers use (``sqlalchemy``: ready for ``text()``)."""

    named: str
    params: tuple[str, ...] = field(init=False)
    pyformat: str = field(init=False)
    numeric: str = field(init=False)
    sqlalchemy: str = field(init=False)

    def __post_init__(self) -> None:
        names = tuple(dict.fromkeys(_PARAM.findall(self.named)))
        object.__setattr__(self, "params", names)
        # psycopg reads every % as a placeholder: a literal one (modulo, LIKE 'a%') must be doubled.
        object.__setattr__(self, "pyformat", _PARAM.sub(r"%(\1)s", self.named.replace("%", "%%")))
        object.__setattr__(
            self, "numeric", _PARAM.sub(lambda m: f"${names.index(m.group(1)) + 1}", self.named)
        )
        object.__setattr__(self, "sqlalchemy", _PARAM_CAST.sub(r"\1\\:\\:", self.named))

    def positional(self, values: dict[str, object]) -> list[object]:
        """Values in ``$n`` order, for asyncpg."""
        return [values[name] for name in self.params]


PG_SLEEP = Query("SELECT pg_sleep(:seconds)")

LOOKUP = Query(
    "SELECT id, customer_id, category, amount_cents, created_at FROM items WHERE id = :item_id"
)

# A few milliseconds of real work: a join and an aggregate over one category (~10% of items).
REPORT = Query(
    """
    SELECT c.region,
           count(*)::bigint AS orders,
           sum(i.amount_cents)::bigint AS total_cents,
           round(avg(i.amount_cents))::bigint AS avg_cents
    FROM items AS i
    JOIN customers AS c ON c.id = i.customer_id
    WHERE i.category = :category
    GROUP BY c.region
    ORDER BY c.region
    """
)

# An upsert into a fixed set of slots: real writes (WAL, row locks) without growing the table under load.
WRITE = Query(
    """
    INSERT INTO writes (slot, note) VALUES (:slot, :note)
    ON CONFLICT (slot) DO UPDATE
        SET note = EXCLUDED.note, hits = writes.hits + 1, updated_at = now()
    RETURNING slot, note, hits
    """
)

SERVER_FACTS = Query(
    "SELECT current_setting('server_version') AS server_version,"
    " current_setting('max_connections')::int AS max_connections"
)

LOOKUP_COLUMNS = ("id", "customer_id", "category", "amount_cents", "created_at")
REPORT_COLUMNS = ("region", "orders", "total_cents", "avg_cents")
WRITE_COLUMNS = ("slot", "note", "hits")

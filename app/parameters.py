"""Query parameters of each workload, bounded by the settings.

Each workload's parameters are one pydantic model, which every catalogue route declares to
FastAPI as ``Annotated[Model, Query()]`` (FastAPI's query parameter models): FastAPI validates
it on the event loop before a ``def`` route's thread starts, answers a bad value with its 422
and documents the fields as the route's query parameters. The hand-written ``minimal`` routes
declare nothing and check ``?id=`` themselves (app/routes.py).
"""


import random
from typing import Any

from pydantic import BaseModel, Field

from app.data_folder import FILE_NAME, SMALL_FILE, resolve_data_file
from app.settings import Settings

PG_INT_MAX = 2**31 - 1


class WorkloadQuery(BaseModel):
    """A workload's query parameters; ``call_kwargs`` turns them into its driver call's keyword arguments."""

    def call_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError


def workload_queries(settings: Settings) -> dict[str, type[WorkloadQuery]]:
    """One query model per workload name, with the bounds and defaults of ``settings``."""

    class Seconds(WorkloadQuery):
        seconds: float = Field(
            settings.default_wait_seconds, ge=0, le=settings.max_wait_seconds, allow_inf_nan=False,
            description=f"S, the length of each of the two waits (0..{settings.max_wait_seconds}).",
        )

        def call_kwargs(self) -> dict[str, Any]:
            return {"seconds": self.seconds}

    class Lookup(WorkloadQuery):
        id: int | None = Field(None, ge=1, le=PG_INT_MAX, description="Item id; random in 1..seed_rows if absent.")

        def call_kwargs(self) -> dict[str, Any]:
            return {"item_id": self.id if self.id is not None else random.randint(1, settings.seed_rows)}

    class Report(WorkloadQuery):
        category: int | None = Field(None, ge=0, lt=settings.categories, description="Category to aggregate; random if absent.")

        def call_kwargs(self) -> dict[str, Any]:
            return {"category": self.category if self.category is not None else random.randrange(settings.categories)}

    class Write(WorkloadQuery):
        slot: int | None = Field(None, ge=0, lt=settings.write_slots, description="Row to upsert; random if absent.")
        # Postgres text cannot hold NUL (every driver raises on it), so it is refused up front as a 422.
        note: str = Field("iobench", max_length=200, pattern=r"^[^\x00]*$",
                          description="Text stored in the row, as a bound value (no NUL).")

        def call_kwargs(self) -> dict[str, Any]:
            slot = self.slot if self.slot is not None else random.randrange(settings.write_slots)
            return {"slot": slot, "note": self.note}

    class File(WorkloadQuery):
        name: str = Field(
            SMALL_FILE, min_length=1, max_length=255,
            description="A file name in the data folder, e.g. small.bin or large.bin.",
            # Documented only: resolve_data_file checks it, with a message that quotes the name.
            json_schema_extra={"pattern": f"^{FILE_NAME.pattern}$"},
        )

        def call_kwargs(self) -> dict[str, Any]:
            return {"path": resolve_data_file(settings.data_dir, self.name)}

    return {"wait": Seconds, "pg_sleep": Seconds, "lookup": Lookup, "report": Report, "write": Write, "file": File}

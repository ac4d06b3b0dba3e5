"""Query parameters of each workload, bounded by the settings.

Each workload's parameters are one pydantic model, which a route validates itself
(``Model.from_query(request.query_params)``, about 2 µs) rather than declaring it to FastAPI.
Declared as ``Annotated[Model, Query()]``, the same model cost the lookup routes 5-10% of their
service CPU next to the hand-written minimal route (N7: 0.903-0.947 over three default runs on
5d43932), as an ``async def`` dependency about 1% more; validated here, 0.976-0.996 over three
default runs on 1cb093a (results/stability). Both answer a bad value alike: FastAPI's 422 with
the same body, and ``query_parameters`` documents the model in the OpenAPI schema as FastAPI
would have.
"""


import random
from collections.abc import Mapping
from typing import Any, Self

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError

from app.data_folder import FILE_NAME, SMALL_FILE, resolve_data_file
from app.settings import Settings

PG_INT_MAX = 2**31 - 1


class WorkloadQuery(BaseModel):
    """A workload's query parameters; ``call_kwargs`` turns them into its driver call's keyword arguments."""

    @classmethod
    def from_query(cls, query: Mapping[str, str]) -> Self:
        """The parameters in ``query``; bad ones raise FastAPI's ``RequestValidationError`` (its 422 answer)."""
        try:
            return cls.model_validate(query)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            raise RequestValidationError([{**error, "loc": ("query", *error["loc"])} for error in errors]) from None

    def call_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError


def query_parameters(model: type[WorkloadQuery]) -> list[dict[str, Any]]:
    """``model``'s fields as OpenAPI query parameters, in the form FastAPI gives a declared query model."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    return [{"name": name, "in": "query", "required": name in required, "schema": field,
             **({"description": field["description"]} if "description" in field else {})}
            for name, field in schema["properties"].items()]


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

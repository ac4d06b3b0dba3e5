"""The non-database "drivers": the article's sleeps and file reads from the data folder.

They share the database drivers' shape (``db.drivers.base.DriverInstance``: ``kind``,
``start``/``stop``/``pool_info``) so the catalogue and the routes treat every driver alike.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiofiles
import anyio


class _Unpooled:
    """Nothing to open or close, no pool to report."""

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def pool_info(self) -> dict[str, Any] | None:
        return None


class NoIO(_Unpooled):
    """The article's hello-world routes: no driver at all."""

    kind = "sync"


class TimeSleep(_Unpooled):
    """``time.sleep``: the article's blocking stand-in for I/O."""

    kind = "sync"

    def wait(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds


class AsyncioSleep(_Unpooled):
    """``asyncio.sleep``: the article's non-blocking stand-in for I/O."""

    kind = "async"

    async def wait(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds


def _file_result(path: Path, data: bytes) -> dict[str, Any]:
    return {"name": path.name, "bytes": len(data)}


class OpenFiles(_Unpooled):
    """Builtin ``open()``: a blocking read of the whole file."""

    kind = "sync"

    def read_file(self, path: Path) -> dict[str, Any]:
        with open(path, "rb") as file:
            return _file_result(path, file.read())


class AiofilesFiles(_Unpooled):
    """``aiofiles``: each call is handed to asyncio's default executor (its own threads, not AnyIO's)."""

    kind = "async"

    async def read_file(self, path: Path) -> dict[str, Any]:
        async with aiofiles.open(path, "rb") as file:
            return _file_result(path, await file.read())


class AnyioFiles(_Unpooled):
    """``anyio.Path.read_bytes``: a thread hop through the same limiter as ``def`` routes."""

    kind = "async"

    async def read_file(self, path: Path) -> dict[str, Any]:
        return _file_result(path, await anyio.Path(path).read_bytes())

"""The data folder: seeded files, and the only place the file routes may read from."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

SMALL_FILE = "small.bin"
LARGE_FILE = "large.bin"
SEED_FILES = {SMALL_FILE: 4 * 1024, LARGE_FILE: 8 * 1024 * 1024}

# A bare file name: no separators, no leading dot, nothing to encode a way out of the folder.
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,254}")


class DataFileError(Exception):
    """A file name the data folder refuses, with the HTTP status that says why (app/errors.py maps it):
    422 not a plain file name, 403 it resolves outside the folder, 404 no such regular file."""

    def __init__(self, status: Literal[403, 404, 422], detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def resolve_data_file(root: Path, name: str) -> Path:
    """The regular file ``name`` inside ``root``, or a DataFileError."""
    if not FILE_NAME.fullmatch(name):
        raise DataFileError(422, f"name must be a plain file name in the data folder, got {name!r}")
    base = root.resolve()
    try:
        path = (base / name).resolve(strict=True)
    except FileNotFoundError:
        raise DataFileError(404, f"no file {name!r} in the data folder") from None
    # resolve() followed any symlink: what it points at must still be inside the folder.
    if not path.is_relative_to(base):
        raise DataFileError(403, f"{name!r} points outside the data folder")
    if not path.is_file():
        raise DataFileError(404, f"{name!r} is not a regular file")
    return path


def seed_files(root: Path) -> list[Path]:
    """Create the seeded files (deterministic bytes) unless they are already there at the right size."""
    root.mkdir(parents=True, exist_ok=True)
    pattern = bytes(range(256))
    written = []
    for name, size in SEED_FILES.items():
        path = root / name
        if path.is_file() and path.stat().st_size == size:
            continue
        path.write_bytes((pattern * (size // len(pattern) + 1))[:size])
        written.append(path)
    return written

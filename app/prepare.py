"""The service's database and data folder, ready: the settings-side of ``db/bootstrap.py``.

``iobench prepare``, ``iobench serve`` and the load-test harness call these two; db/ itself
takes only a URL and a SeedShape.
"""

from __future__ import annotations

from app.data_folder import seed_files
from app.settings import Settings
from db import bootstrap


def locate(settings: Settings) -> bootstrap.Database:
    """The server to use: ``DATABASE_URL``, else localhost:5432, else an embedded one (see db/bootstrap.py)."""
    return bootstrap.locate(settings.database_url)


def prepare(url: str, settings: Settings, *, seed: bool = True) -> None:
    """Create (if missing), migrate and seed the database at ``url``, and write the data files."""
    bootstrap.prepare(url, settings.seed_shape() if seed else None)
    seed_files(settings.data_dir)

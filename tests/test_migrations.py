"""Migrations up and down on a fresh database, deterministic seeding, and the seeded data files."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from app.data_folder import LARGE_FILE, SEED_FILES, SMALL_FILE, seed_files
from db import migrate
from db.seed import SeedShape, seed_if_needed, seeded_shape
from db.url import libpq_url

HEAD = ScriptDirectory(str(migrate.MIGRATIONS)).get_current_head()

TABLES = {"customers", "items", "writes", "seed_info"}
SHAPE = SeedShape(rows=500, customers=20, categories=4)


def tables(url: str) -> set[str]:
    with psycopg.connect(libpq_url(url)) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return {row[0] for row in rows}


def alembic_versions(url: str) -> list[str]:
    with psycopg.connect(libpq_url(url)) as connection:
        return [row[0] for row in connection.execute("SELECT version_num FROM alembic_version").fetchall()]


def digest(url: str, table: str) -> tuple[int, str]:
    """Row count and an md5 over every row of ``table`` (the table name is one of ours, not input)."""
    with psycopg.connect(libpq_url(url)) as connection:
        row = connection.execute(
            f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY id)) FROM {table} t"  # noqa: S608
        ).fetchone()
    assert row is not None
    return row


@pytest.mark.postgres
def test_upgrade_downgrade_upgrade(empty_database_factory: Callable[[], str]) -> None:
    url = empty_database_factory()
    assert tables(url) == set()

    migrate.upgrade(url)
    assert tables(url) == TABLES | {"alembic_version"}
    assert alembic_versions(url) == [HEAD]

    migrate.upgrade(url)  # already at head: nothing to do, nothing breaks
    assert alembic_versions(url) == [HEAD]

    migrate.downgrade(url, "base")
    assert tables(url) == {"alembic_version"}  # alembic keeps its table, empty at base
    assert alembic_versions(url) == []

    migrate.upgrade(url)
    assert tables(url) == TABLES | {"alembic_version"}
    assert alembic_versions(url) == [HEAD]
    with psycopg.connect(libpq_url(url)) as connection:
        indexes = {row[0] for row in connection.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'items'")}
    assert "ix_items_category" in indexes


@pytest.mark.postgres
def test_seeding_is_deterministic(empty_database_factory: Callable[[], str]) -> None:
    first, second = empty_database_factory(), empty_database_factory()
    for url in (first, second):
        migrate.upgrade(url)
        assert seeded_shape(url) is None
        assert seed_if_needed(url, SHAPE) is True
        assert seeded_shape(url) == SHAPE

    for table, rows in (("items", SHAPE.rows), ("customers", SHAPE.customers)):
        count, md5 = digest(first, table)
        assert count == rows
        assert (count, md5) == digest(second, table), table

    # Already seeded with this shape: nothing to do, and the data is untouched.
    before = digest(first, "items")
    assert seed_if_needed(first, SHAPE) is False
    assert digest(first, "items") == before

    # Another shape reseeds (replacing, not appending), and going back gives the first data again.
    bigger = SeedShape(rows=SHAPE.rows + 100, customers=SHAPE.customers, categories=SHAPE.categories)
    assert seed_if_needed(first, bigger) is True
    assert seeded_shape(first) == bigger
    assert digest(first, "items")[0] == bigger.rows
    assert digest(first, "customers") == digest(second, "customers")
    assert seed_if_needed(first, SHAPE) is True
    assert digest(first, "items") == digest(second, "items")
    with psycopg.connect(libpq_url(first)) as connection:
        assert connection.execute("SELECT count(*) FROM seed_info").fetchone() == (1,)


@pytest.mark.postgres
def test_seeded_items_reference_existing_customers(empty_database_factory: Callable[[], str]) -> None:
    url = empty_database_factory()
    migrate.upgrade(url)
    seed_if_needed(url, SHAPE)
    with psycopg.connect(libpq_url(url)) as connection:
        orphans = connection.execute(
            "SELECT count(*) FROM items i LEFT JOIN customers c ON c.id = i.customer_id WHERE c.id IS NULL"
        ).fetchone()
        categories = connection.execute("SELECT min(category), max(category), count(DISTINCT category) FROM items").fetchone()
    assert orphans == (0,)
    assert categories == (0, SHAPE.categories - 1, SHAPE.categories)
    migrate.downgrade(url, "base")
    assert tables(url) == {"alembic_version"}


def _expected_bytes(size: int) -> bytes:
    return (bytes(range(256)) * (size // 256 + 1))[:size]


def test_seed_files(tmp_path: Path) -> None:
    root = tmp_path / "data"  # does not exist yet: seed_files creates it
    written = seed_files(root)
    assert sorted(path.name for path in written) == sorted([SMALL_FILE, LARGE_FILE])
    assert SEED_FILES == {SMALL_FILE: 4096, LARGE_FILE: 8 * 1024 * 1024}
    assert (root / SMALL_FILE).stat().st_size == 4096
    assert (root / LARGE_FILE).stat().st_size == 8 * 1024 * 1024
    assert (root / SMALL_FILE).read_bytes() == _expected_bytes(4096)
    digests = {name: hashlib.md5((root / name).read_bytes()).hexdigest() for name in SEED_FILES}
    assert digests[LARGE_FILE] == hashlib.md5(_expected_bytes(8 * 1024 * 1024)).hexdigest()

    # Idempotent: a second call writes nothing and leaves the files as they were.
    mtimes = {name: (root / name).stat().st_mtime_ns for name in SEED_FILES}
    assert seed_files(root) == []
    assert {name: (root / name).stat().st_mtime_ns for name in SEED_FILES} == mtimes

    # Another folder gets byte-identical files.
    other = tmp_path / "other"
    seed_files(other)
    assert {name: hashlib.md5((other / name).read_bytes()).hexdigest() for name in SEED_FILES} == digests


@pytest.mark.parametrize("damage", ["truncated", "missing"])
def test_seed_files_repairs_a_wrong_file(tmp_path: Path, damage: str) -> None:
    seed_files(tmp_path)
    small = tmp_path / SMALL_FILE
    if damage == "truncated":
        small.write_bytes(b"short")
    else:
        small.unlink()
    assert seed_files(tmp_path) == [small]
    assert small.read_bytes() == _expected_bytes(4096)

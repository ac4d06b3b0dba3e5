"""Bad input gets a clear JSON 4xx, never a 500, never a file outside the data folder, never SQL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient

from app.catalogue import SCENARIOS
from app.settings import Settings

pytestmark = pytest.mark.postgres  # every test here runs against the session's test database

WAIT_PATHS = [s.path for s in SCENARIOS if s.workload.name in {"wait", "pg_sleep"}]
LOOKUP_PATHS = [s.path for s in SCENARIOS if s.workload.name == "lookup"]
REPORT_PATHS = [s.path for s in SCENARIOS if s.workload.name == "report"]
WRITE_PATHS = [s.path for s in SCENARIOS if s.workload.name == "write"]
FILE_PATHS = [s.path for s in SCENARIOS if s.workload.name == "file"]
OUTSIDE_SECRET = b"outside-the-data-folder: do not serve me\n" * 3


def assert_unprocessable(response: httpx.Response, parameter: str) -> None:
    """A 422 whose JSON body names ``parameter``."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    detail = response.json()["detail"]
    if isinstance(detail, list):  # FastAPI's validation errors: the parameter is in "loc"
        assert any(error["loc"] == ["query", parameter] for error in detail), detail
    else:  # our own checks (the data folder) say it in words
        assert parameter in detail, detail


def test_unknown_scenario_is_a_json_404(client: TestClient) -> None:
    for path in ("/bench/nope", "/bench/wait/sync/nope", "/bench/lookup/async/psycopg2", "/bench/wait/async-blocking/asyncio"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.headers["content-type"].startswith("application/json")
        assert response.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("path", WAIT_PATHS)
def test_bad_seconds(client: TestClient, settings: Settings, path: str) -> None:
    too_long = settings.max_wait_seconds + 0.001
    for value in ("-1", "-0.001", str(too_long), "nan", "NaN", "inf", "-inf", "Infinity", "1e309", "abc", "", "1,5"):
        assert_unprocessable(client.get(f"{path}?seconds={value}"), "seconds")


@pytest.mark.parametrize("path", LOOKUP_PATHS)
def test_bad_lookup_ids(client: TestClient, path: str) -> None:
    for value in ("0", "-1", "abc", "1.5", str(2**31), str(2**63), "1e3"):
        assert_unprocessable(client.get(f"{path}?id={value}"), "id")


@pytest.mark.parametrize("path", LOOKUP_PATHS)
def test_lookup_of_a_missing_id_is_a_json_404(client: TestClient, settings: Settings, path: str) -> None:
    for item_id in (settings.seed_rows + 1, 2**31 - 1):
        response = client.get(path, params={"id": item_id})
        assert response.status_code == 404, response.text
        assert response.json() == {"detail": "no such item"}


@pytest.mark.parametrize("path", REPORT_PATHS)
def test_bad_report_category(client: TestClient, settings: Settings, path: str) -> None:
    for value in ("-1", str(settings.categories), str(settings.categories + 100), "x"):
        assert_unprocessable(client.get(f"{path}?category={value}"), "category")


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_bad_write_parameters(client: TestClient, settings: Settings, path: str) -> None:
    assert_unprocessable(client.get(path, params={"slot": 0, "note": "n" * 201}), "note")
    assert_unprocessable(client.get(path, params={"slot": -1}), "slot")
    assert_unprocessable(client.get(path, params={"slot": settings.write_slots}), "slot")
    assert client.get(path, params={"slot": 0, "note": "n" * 200}).status_code == 200


# --- the data folder ------------------------------------------------------------------------


@pytest.fixture
def outside_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret.txt"
    path.write_bytes(OUTSIDE_SECRET)
    return path


@pytest.fixture
def planted(settings: Settings, outside_file: Path) -> Iterator[dict[str, Path]]:
    """A directory and symlinks (out to a file, out to a directory, a dangling one) inside the data folder."""
    root = settings.data_dir
    made = {
        "directory": root / "subdir",
        "link_out": root / "link_out.bin",
        "link_out_dir": root / "link_out_dir",
        "dangling": root / "dangling.bin",
    }
    made["directory"].mkdir()
    (made["directory"] / "inner.bin").write_bytes(b"inner")
    made["link_out"].symlink_to(outside_file)
    made["link_out_dir"].symlink_to(outside_file.parent, target_is_directory=True)
    made["dangling"].symlink_to(root / "does-not-exist.bin")
    try:
        yield made
    finally:
        for name in ("link_out", "link_out_dir", "dangling"):
            made[name].unlink(missing_ok=True)
        (made["directory"] / "inner.bin").unlink(missing_ok=True)
        made["directory"].rmdir()


def assert_not_served(response: httpx.Response, *secrets: bytes) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "result" not in response.json()
    for secret in secrets:
        assert secret not in response.content


# Raw query strings: httpx leaves an already-encoded query as it is, so the server decodes it.
TRAVERSALS = [
    "../etc/passwd",
    "/etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "..%2f..%2f..%2f..%2fetc%2fpasswd",
    "%2Fetc%2Fpasswd",
    "..%252F..%252Fetc%252Fpasswd",  # double-encoded: arrives as '..%2F..', which is no plain name either
    "....%2F%2Fetc%2Fpasswd",
    "..%5C..%5Cetc%5Cpasswd",  # backslashes
    "..",
    ".",
    ".hidden",
    "small.bin%00",
    "small.bin%00.txt",
    "%00",
    "small.bin%0A",
    "subdir%2Finner.bin",
    "a" * 256,
]


@pytest.mark.parametrize("path", FILE_PATHS)
def test_file_names_that_leave_the_folder_are_refused(client: TestClient, path: str) -> None:
    passwd = Path("/etc/passwd").read_bytes()[:32]
    for name in TRAVERSALS:
        response = client.get(f"{path}?name={name}")
        assert_not_served(response, passwd, b"root:")
        assert response.status_code == 422, (name, response.text)
        assert "name" in response.text


def test_raw_traversal_reaches_the_app_decoded(client: TestClient) -> None:
    """Make sure the encoded cases above test the app's check and not the client's encoding."""
    detail = client.get("/bench/file/sync/open?name=..%2F..%2Fetc%2Fpasswd").json()["detail"]
    assert "'../../etc/passwd'" in detail
    detail = client.get("/bench/file/sync/open?name=small.bin%00").json()["detail"]
    assert "'small.bin\\x00'" in detail


@pytest.mark.parametrize("path", FILE_PATHS)
def test_planted_entries_are_refused(client: TestClient, planted: dict[str, Path], outside_file: Path, path: str) -> None:
    secret_size = str(len(OUTSIDE_SECRET)).encode()
    cases = {"subdir": 404, "link_out.bin": 403, "link_out_dir": 403, "dangling.bin": 404, "missing.bin": 404}
    for name, status in cases.items():
        response = client.get(path, params={"name": name})
        assert_not_served(response, OUTSIDE_SECRET[:20], b"root:")
        assert response.status_code == status, (name, response.text)
        assert secret_size not in response.content
    # Through the linked directory, with a separator: not a plain name at all.
    response = client.get(f"{path}?name=link_out_dir%2F{outside_file.name}")
    assert_not_served(response, OUTSIDE_SECRET[:20])
    # The seeded files still read fine beside the planted entries.
    assert client.get(path, params={"name": "small.bin"}).json()["result"] == {"name": "small.bin", "bytes": 4096}


def test_a_symlink_inside_the_folder_to_a_file_inside_is_served(client: TestClient, settings: Settings) -> None:
    link = settings.data_dir / "alias.bin"
    link.symlink_to(settings.data_dir / "small.bin")
    try:
        response = client.get("/bench/file/sync/open", params={"name": "alias.bin"})
        assert response.status_code == 200
        assert response.json()["result"] == {"name": "small.bin", "bytes": 4096}  # the resolved file
    finally:
        os.unlink(link)


# --- SQL injection: values are bound, never formatted in ------------------------------------

INJECTIONS = ["'; DROP TABLE items; --", "1 OR 1=1", "x'); DELETE FROM writes; --", "%(note)s $1 :note", "\\'; --"]


def _items_count(settings: Settings) -> int:
    with psycopg.connect(settings.url) as connection:
        row = connection.execute("SELECT count(*) FROM items").fetchone()
    assert row is not None
    count: int = row[0]
    return count


@pytest.mark.parametrize("path", WRITE_PATHS)
def test_injection_in_note_is_stored_literally(client: TestClient, settings: Settings, path: str) -> None:
    slot = settings.write_slots - 2
    for note in INJECTIONS:
        response = client.get(path, params={"slot": slot, "note": note})
        assert response.status_code == 200, response.text
        assert response.json()["result"]["note"] == note
        with psycopg.connect(settings.url) as connection:
            stored = connection.execute("SELECT note FROM writes WHERE slot = %s", (slot,)).fetchone()
            tables = {row[0] for row in connection.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        assert stored == (note,)
        assert {"items", "customers", "writes", "seed_info"} <= tables
    assert _items_count(settings) == settings.seed_rows


def test_injection_in_numeric_parameters_is_rejected(client: TestClient, settings: Settings) -> None:
    assert_unprocessable(client.get("/bench/lookup/sync/psycopg2", params={"id": "1 OR 1=1"}), "id")
    assert_unprocessable(client.get("/bench/report/async/asyncpg", params={"category": "0; DROP TABLE items"}), "category")
    assert _items_count(settings) == settings.seed_rows

"""One module per Postgres driver; each class keeps the contract of ``base.SyncDatabase`` or
``base.AsyncDatabase`` (the four operations the routes call, errors as 503s, recovery).

Sync drivers (blocking calls, to be run in a thread unless a route means to stall the loop)::

    pg_sleep(seconds) -> float        lookup(item_id) -> dict | None
    report(category) -> list[dict]    write(slot, note) -> dict

Async drivers offer the same names as coroutines. Both kinds have ``async start()``,
``async stop()`` and ``pool_info()`` so the app's lifespan can treat them alike, and are
built from one ``base.ConnectionConfig``.

Adding a driver:

1. ``db/drivers/NAME.py``: a class taking a ``ConnectionConfig``, running the SQL of
   ``db/queries.py``, with every connection error, pool timeout and statement timeout raised
   through ``base.unavailable()``, and connections the server closed dropped at checkout
   (``base.peer_hung_up``), and ``config.prepared_statements`` honoured (its setting named in
   the class's ``pgbouncer_setting``). Copy the nearest existing module.
2. One entry in ``DRIVERS`` (``app/catalogue.py``): its name, kind, workloads,
   ``factory="db.drivers.NAME:Class"``, ``distributions`` and ``pooled=True``; a sync driver
   names its ``async_twin`` if it has one.
3. Its package in ``pyproject.toml`` and pinned in ``constraints.txt``.
4. The scenario table in ``docs/styles.md``: paste the output of ``iobench scenarios``.

Routes, ``/scenarios``, ``/config``, the load-test plan and the tests follow from the catalogue
(tests/test_catalogue.py adds a fake driver that way). One more pool is more server
connections: ``docker-compose.yml``'s ``max_connections`` must still cover every pool.
"""

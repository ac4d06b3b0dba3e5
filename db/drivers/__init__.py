"""One module per Postgres driver. Every driver class offers the same four operations.

Sync drivers (blocking calls, to be run in a thread unless a route means to stall the loop)::

    pg_sleep(seconds) -> float        lookup(item_id) -> dict | None
    report(category) -> list[dict]    write(slot, note) -> dict

Async drivers offer the same names as coroutines. Both kinds have ``async start()``,
``async stop()`` and ``pool_info()`` so the app's lifespan can treat them alike.
"""

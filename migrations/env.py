"""Alembic environment: runs migrations online against the iobench database."""

from __future__ import annotations

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from db.url import DEFAULT_URL, with_driver

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# db/migrate.py passes the URL in; `alembic upgrade head` from a shell reads DATABASE_URL, as the service does.
url = config.attributes.get("url") or os.environ.get("DATABASE_URL") or DEFAULT_URL
engine = create_engine(with_driver(url, "postgresql+psycopg2"), poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

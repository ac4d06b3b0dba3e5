"""Alembic environment: runs migrations online against the iobench database."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from app.settings import Settings
from db.url import database_url, with_driver

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

# db/migrate.py passes the URL in; `alembic upgrade head` from a shell falls back to DATABASE_URL.
url = config.attributes.get("url") or database_url(Settings())
engine = create_engine(with_driver(url, "postgresql+psycopg2"), poolclass=pool.NullPool)

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()

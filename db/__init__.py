"""Database side of iobench: one module per driver, the shared SQL, migrations and seeding."""

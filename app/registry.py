"""The one place a catalogue driver becomes a live object: its ``factory`` string, imported.

The catalogue names each driver's class as ``"module:Class"`` (the form uvicorn takes for the
app); importing happens here, when the service starts, so reading the catalogue costs no
driver library.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Any

from app.catalogue import DRIVERS, Driver
from app.settings import Settings
from db.drivers.base import DriverInstance


def resolve(factory: str) -> Callable[..., Any]:
    """The class (or function) ``"package.module:Name"`` names."""
    module, _, name = factory.partition(":")
    if not module or not name:
        raise ValueError(f"a driver factory is 'module:Name', got {factory!r}")
    found: Callable[..., Any] = getattr(importlib.import_module(module), name)
    return found


def open_driver(driver: Driver, settings: Settings) -> DriverInstance:
    """A new, not yet started instance of ``driver``: a pooled driver gets its ConnectionConfig."""
    factory = resolve(driver.factory)
    if not driver.pooled:
        plain: DriverInstance = factory()
        return plain
    instance: DriverInstance = factory(settings.connection(driver.name, driver_defaults=driver.defaults_of is not None))
    return instance


def open_drivers(settings: Settings, drivers: Iterable[Driver] = DRIVERS) -> dict[str, DriverInstance]:
    """An instance of every driver, by name (what the app's lifespan starts and stops)."""
    return {driver.name: open_driver(driver, settings) for driver in drivers}

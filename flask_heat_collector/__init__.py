"""Flask extension collecting heat-tracker SDK batches: heatmaps, events, sessions, metrics."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from .errors import ConfigurationError, HeatCollectorError, StorageUnavailable
from .extension import HeatCollector
from .state import get_state

__all__ = ["ConfigurationError", "HeatCollector", "HeatCollectorError", "StorageUnavailable", "get_state"]

try:
    __version__ = version("flask-heat-collector")  # set in pyproject.toml only
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

"""Flask extension collecting heat-tracker SDK batches: heatmaps, events, sessions, metrics."""

from __future__ import annotations

from .errors import ConfigurationError, HeatCollectorError, StorageUnavailable
from .extension import HeatCollector, get_state

__all__ = ["ConfigurationError", "HeatCollector", "HeatCollectorError", "StorageUnavailable", "get_state"]
__version__ = "0.1.0"

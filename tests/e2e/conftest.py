"""End-to-end fixtures: the real SDK in Debian's Chromium, driven by Playwright, against gunicorn.

Prerequisites: /usr/bin/chromium (``apt-get install chromium``), npm (the SDK is installed once into
build/e2e-node), gunicorn and Playwright for Python; the worker tests also need Redis. A missing one
skips locally and fails when ``CI=true``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .support import REDIS_URI, ensure_sdk, static_site, unavailable


@pytest.fixture(scope="session")
def sdk_dist() -> Path:
    return ensure_sdk()


@pytest.fixture(scope="session")
def site(sdk_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Origin of the test page, on another port than the collector (so CORS preflights happen)."""
    with static_site(tmp_path_factory.mktemp("site"), sdk_dist) as url:
        yield url


@pytest.fixture(scope="session")
def redis_uri() -> str:
    """The Redis database the worker tests share limits and metrics through."""
    try:
        import redis

        redis.Redis.from_url(REDIS_URI, socket_connect_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001 - reported as skip/fail
        unavailable(f"Redis at {REDIS_URI} is unreachable: {exc}")
    return REDIS_URI

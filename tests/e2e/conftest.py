"""End-to-end fixtures: the real SDK in Debian's Chromium, driven by Playwright, against gunicorn.

Prerequisites: /usr/bin/chromium (``apt-get install chromium``), npm (the SDK is installed once into
build/e2e-node), gunicorn and Playwright for Python; the worker tests also need Redis. A missing one
skips locally and fails when ``CI=true``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .support import CHROMIUM, CHROMIUM_ARGS, REDIS_URI, ensure_sdk, static_site, unavailable


@pytest.fixture(scope="session")
def sdk_dist() -> Path:
    return ensure_sdk()


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (Playwright cannot download browsers here)."""
    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


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

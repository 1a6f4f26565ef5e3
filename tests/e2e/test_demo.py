"""The README's demo page in Chromium: clicks, moves, a masked input, then its heatmap overlay (screenshot)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

import pytest

from .support import ARTIFACTS, ROOT, wait_until

pytestmark = pytest.mark.e2e
SECRET = "demo-secret-typed-value"


def load_demo(sdk_dist: Path, instance: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DEMO_SDK_DIST", str(sdk_dist))
    monkeypatch.setenv("DEMO_INSTANCE_PATH", str(instance))
    spec = importlib.util.spec_from_file_location("heat_demo_app", ROOT / "examples" / "demo" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_page_draws_its_heatmap(
    browser: Any, sdk_dist: Path, tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = load_demo(sdk_dist, tmp_path / "instance", monkeypatch)
    server = live_server(demo.app)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(server.url + "/")
        wait_until(lambda: page.evaluate("() => Boolean(window.heatTracker)"), 20, "the SDK did not start", page)
        for selector in ("#buy", "#cart", "#signup", "#buy", "#plans", "#buy"):
            box = page.locator(selector).bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + 10, box["y"] + 10, steps=8)
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.click("#name")
        page.keyboard.type(SECRET)
        page.mouse.wheel(0, 600)
        page.mouse.wheel(0, -600)
        page.click("#show")
        wait_until(lambda: "plotted" in page.inner_text("#status"), 30, "the heatmap was not drawn", page)
        match = re.match(r"(\d+) of (\d+) events plotted", page.inner_text("#status"))
        assert match is not None, page.inner_text("#status")
        plotted, total = int(match[1]), int(match[2])
        assert plotted >= 6 and total >= plotted
        painted = page.evaluate(
            """() => { const c = document.getElementById('heat');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""
        )
        assert painted > 1000
        page.evaluate("() => { document.getElementById('name').value = ''; }")  # keep the secret out of the picture
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-heatmap.png"), full_page=True)
    finally:
        page.close()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "instance").glob("heat-collector.db*"))
    assert SECRET.encode() not in stored

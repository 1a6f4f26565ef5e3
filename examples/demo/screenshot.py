"""The README's picture: the viewer over the seeded demo page, in Chromium at 1280x900.

Run from the repository root with ``.venv/bin/python examples/demo/screenshot.py [OUTPUT]``
(default ``docs/images/viewer-demo.png``). It serves the demo on a free loopback port with a fresh,
seeded database in a temporary folder (the demo's own ``instance/`` is left alone), opens the
viewer through the demo page's link, waits for the map and saves the window. Needs Playwright
(the ``[test]`` extra) and Chromium (``/usr/bin/chromium``, or ``HEAT_TEST_E2E_CHROMIUM``).
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("HEAT_TEST_E2E_CHROMIUM", "/usr/bin/chromium")
WIDTH, HEIGHT = 1280, 900


def main(output: Path) -> None:
    from playwright.sync_api import sync_playwright
    from werkzeug.serving import make_server

    with tempfile.TemporaryDirectory() as instance:
        os.environ["DEMO_INSTANCE_PATH"] = instance
        os.environ["DEMO_SEED"] = "1"
        import app as demo  # seeds the empty database on import

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request

        server = make_server("127.0.0.1", 0, demo.app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
                page.goto(f"http://127.0.0.1:{server.port}/")
                page.click("#open-viewer")
                page.wait_for_function("() => Number(document.body.dataset.heatmapPoints) > 0", timeout=30_000)
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(1000)  # the framed page and the map finish painting
                output.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(output))
                browser.close()
        finally:
            server.shutdown()
            demo.app.extensions["heat_collector"].repository.dispose()
    print(f"wrote {output}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images" / "viewer-demo.png")

"""The viewer's compare mode (issue 25's acceptance), with the real SDK in Chromium.

One Flask app serves the collector (``HEAT_MIN_SAMPLE_SESSIONS=3``), its viewer and the tracked page
``/offer`` on one origin. The page tags its session with the SDK's custom event
``heat.track("experiment", {variant})`` and shows variant A's button at the left with the label
"Buy", variant B's further right with "Buy now" (same ``#buy``). Of 12 visitors per variant, 5 of
A's and 10 of B's click it (B's visitors twice as often); 6 of each click ``#help`` (no
difference); 8 of B's scroll to the bottom. The viewer, opened in compare mode with
``a=segment=custom:experiment.variant=A`` and ``b=...=B``, must show the elements with both sides,
the delta and the significance mark as ``GET /compare`` answers them; a variant with a single
visitor is below the minimum and the viewer says so. Screenshots go to build/e2e/compare-*.png.
"""

from __future__ import annotations

import json
import math
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import Server
from .support import ARTIFACTS, delivered, sdk_script, sdk_visit, tracked_app, viewer_tab
from .test_viewer import shot

pytestmark = pytest.mark.e2e

QUERY_KEY = "compare-e2e-key"
PROJECT_KEY = "compare-e2e-project"
MIN_SESSIONS = 3
VISITORS = 12  # per variant
CLICKERS = {"A": 5, "B": 10}  # visitors of each variant who click #buy
HELPERS = 6  # visitors of each variant who click #help
SCROLLERS = 8  # visitors of B who scroll to the bottom
SEGMENT = "segment=custom:experiment.variant={}"
MINUS = "\N{MINUS SIGN}"  # the viewer writes differences with a true minus sign

OFFER = (
    """<!doctype html><html><head><meta charset="utf-8"><title>Offer</title>
<style>html, body { margin: 0; } body { font: 14px sans-serif; }
  .page { position: relative; height: 1600px; background: linear-gradient(#f1faee, #a8dadc); }
  button, a { position: absolute; top: 180px; height: 48px; }
  #buy { left: 40px; width: 120px; border: 0; background: #2a9d8f; color: #fff; }
  .B #buy { left: 420px; width: 160px; background: #e76f51; }
  #help { left: 800px; top: 400px; line-height: 48px; }
</style></head>
<body><div class="page"><button id="buy">Buy</button><a id="help" href="#help">Help</a></div>
"""
    + sdk_script(
        before=(
            '  const variant = new URLSearchParams(location.search).get("variant") || "A";\n'
            "  document.body.className = variant;\n"
            '  if (variant === "B") document.getElementById("buy").textContent = "Buy now";\n'
        ),
        after='    window.tracker.track("experiment", { variant });\n',
    )
    + "</body></html>"
)


class Site:
    def __init__(self, browser: Any, sdk_dist: Path, database: Path) -> None:
        app = tracked_app(
            "compare_e2e",
            f"sqlite:///{database}",
            sdk_dist,
            {"/offer": OFFER},
            query_key=QUERY_KEY,
            instance_path=database.parent / "instance",
            HEAT_MIN_SAMPLE_SESSIONS=MIN_SESSIONS,
        )
        self.app, self.browser, self.server = app, browser, Server(app)
        self.project = ""

    def visit(self, variant: str, *, buy: bool, help: bool, bottom: bool = False) -> None:
        """One visitor (a new context: a new session) of ``variant``, its batches delivered."""
        url, viewport = self.server.url, {"width": 1280, "height": 800}
        with sdk_visit(
            self.browser, f"{url}/ingest", PROJECT_KEY, f"{url}/offer?variant={variant}", viewport=viewport
        ) as tab:
            if buy:
                tab.click("button#buy")
            if help:
                tab.click("a#help")
            if bottom:
                tab.mouse.wheel(0, 2000)
                tab.wait_for_function("() => window.scrollY + window.innerHeight >= document.body.scrollHeight")
            self.project = delivered(tab)

    def compare(self, report: str, a: str, b: str) -> Any:
        query = urllib.parse.urlencode({"report": report, "a": a, "b": b, "path": "/offer", "limit": 50})
        url = f"{self.server.url}/api/projects/{self.project}/compare?{query}"
        request = urllib.request.Request(url, headers={"x-api-key": QUERY_KEY})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def viewer(self, a: str, b: str, **more: str) -> str:
        fields = {"project": self.project, "path": "/offer", "mode": "compare", "a": a, "b": b, **more}
        fragment = urllib.parse.urlencode(fields)
        return f"{self.server.url}/viewer#key={QUERY_KEY}&{fragment}"


@pytest.fixture(scope="module")
def site(browser: Any, sdk_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    found = Site(browser, sdk_dist, tmp_path_factory.mktemp("compare-e2e") / "heat.db")
    try:
        for variant in ("A", "B"):
            for index in range(VISITORS):
                bottom = variant == "B" and index < SCROLLERS
                found.visit(variant, buy=index < CLICKERS[variant], help=index >= VISITORS - HELPERS, bottom=bottom)
        found.visit("C", buy=True, help=False)  # a variant below the minimum
        yield found
    finally:
        found.server.stop()
        found.app.extensions["heat_collector"].repository.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A viewer tab; fails on any script error."""
    with viewer_tab(browser, 1700, 1100) as tab:
        yield tab


def compared(page: Any, status: str) -> None:
    """Until the comparison is shown (or failed) and nothing is in flight."""
    page.wait_for_function(
        "(status) => !document.body.dataset.busy && document.body.dataset.compare === status", arg=status
    )


def table(page: Any, table_id: str) -> dict[str, dict[str, str]]:
    """The rows of a compare table by their first cell: header -> cell text (and the mark's tooltip)."""
    rows: dict[str, dict[str, str]] = page.evaluate(
        """(id) => {
            const heads = [...document.querySelectorAll(`#${id} thead th`)].map((th) => th.textContent);
            const rows = {};
            for (const tr of document.querySelectorAll(`#${id} tbody tr`)) {
                const cells = [...tr.cells];
                const row = Object.fromEntries(heads.map((h, i) => [h, cells[i].textContent]));
                row.tooltip = cells[cells.length - 1].title;
                row.significant = cells[cells.length - 1].dataset.significant;
                rows[cells[0].textContent] = row;
            }
            return rows;
        }""",
        table_id,
    )
    return rows


def percent(share: float) -> str:
    """A share as the viewer writes it (HeatViewer.formatPct of 100 x share)."""
    pct = 100 * share
    if pct >= 10 or pct == 0:
        return f"{math.floor(pct + 0.5)}%"
    return f"{math.floor(pct * 10 + 0.5) / 10:g}%"


def signed(value: float, digits: int) -> str:
    sign = "+" if value > 0 else MINUS if value < 0 else "±"
    return f"{sign}{abs(value):.{digits}f}"


def test_compare_mode_shows_both_sides_their_delta_and_the_significance_mark(site: Site, page: Any) -> None:
    a, b = SEGMENT.format("A"), SEGMENT.format("B")
    answer = site.compare("elements", a, b)
    assert answer["status"] == "ok"
    assert (answer["a"]["sessions"], answer["b"]["sessions"]) == (VISITORS, VISITORS)
    by_selector = {d["selector"]: d for d in answer["differences"]}
    # The fixture's known difference: B's button clicked by twice as many sessions, beyond chance;
    # the help link clicked alike, within chance.
    assert by_selector["button#buy"]["significant"] is True
    assert by_selector["a#help"]["significant"] is False

    page.goto(site.viewer(a, b))
    compared(page, "ok")
    shown = table(page, "compare-elements")
    assert set(shown) == set(by_selector)
    for selector, item in by_selector.items():
        row = shown[selector]
        assert row["A"] == f"{item['a']['clicksPerSession']:.2f}"
        assert row["B"] == f"{item['b']['clicksPerSession']:.2f}"
        assert row[f"Δ (B {MINUS} A)"] == signed(item["diff"]["clicksPerSession"], 2)
        assert row["significant"] == ("1" if item["significant"] else "0")
        assert row["Beyond chance"] == ("✱ yes" if item["significant"] else "no")
        assert "two-proportion z-test" in row["tooltip"]
        assert "two-sided, \N{GREEK SMALL LETTER ALPHA} = 0.05" in row["tooltip"]
    assert shown["button#buy"]["A share"] == "42%" and shown["button#buy"]["B share"] == "83%"
    for side in ("a", "b"):
        caption = page.text_content(f"#compare-{side}-caption")
        assert f"based on {VISITORS} sessions" in caption, caption
    assert page.is_hidden("#compare-gate")
    assert page.is_hidden("#map-panel") and page.is_visible("#compare-panel")
    # Both maps are drawn, each over the framed page.
    for side in ("a", "b"):
        assert page.evaluate(f"document.getElementById('compare-{side}-map').width") == 1280
        assert page.get_attribute(f"#compare-{side}-frame", "data-src").endswith("/offer")
    # The state is in the address, the key is not.
    fragment = urllib.parse.parse_qs(page.evaluate("location.hash").lstrip("#"))
    assert (fragment["mode"], fragment["a"], fragment["b"]) == (["compare"], [a], [b])
    assert "key" not in fragment
    shot(page, "compare-sides.png")

    # The scroll reach of both sides, as the API answers it.
    reach = site.compare("scrollmap", a, b)
    rows = table(page, "compare-reach")
    assert sorted(int(depth.rstrip("%")) for depth in rows) == [d["depth"] for d in reach["differences"]]
    for item in reach["differences"]:
        row = rows[f"{item['depth']}%"]
        assert row["A reached"] == percent(item["a"]["share"]) and row["B reached"] == percent(item["b"]["share"])
        assert row["significant"] == ("1" if item["significant"] else "0")

    page.check("input[name=cmap][value=diff]")
    page.wait_for_function("() => document.body.dataset.compareMap === 'diff'")
    heat = site.compare("heatmap", a, b)
    assert page.evaluate("document.body.dataset.compareCells") == str(len(heat["differences"]))
    # Red where B has more clicks per session (its button), blue where fewer (A's button).
    size = heat["a"]["report"]["meta"]["cell"]["w"]
    more = max(heat["differences"], key=lambda d: d["diff"])
    fewer = min(heat["differences"], key=lambda d: d["diff"])
    assert more["diff"] > 0 > fewer["diff"]
    for item, colour in ((more, "red"), (fewer, "blue")):
        x, y = (item["cx"] + 0.5) * size, (item["cy"] + 0.5) * size
        r, _, b, alpha = page.evaluate(
            """([x, y]) => [...document.getElementById("compare-a-map").getContext("2d")
                              .getImageData(Math.floor(x), Math.floor(y), 1, 1).data]""",
            [x, y],
        )
        assert alpha > 0 and ((r > b) if colour == "red" else (b > r)), (colour, r, b, alpha)
    assert page.is_hidden("#compare-b")
    assert "mode=compare" in page.evaluate("location.hash") and "cmap=diff" in page.evaluate("location.hash")
    shot(page, "compare-diff.png")
    # docs/images/viewer-compare.png: the forms, the difference map's top and the elements table.
    page.screenshot(path=str(ARTIFACTS / "compare-doc.png"), clip={"x": 0, "y": 56, "width": 1700, "height": 620})
    page.check("input[name=cmap][value=scroll]")
    page.wait_for_function("() => document.body.dataset.compareMap === 'scroll'")
    shot(page, "compare-scroll.png")
    assert page.errors == []


def test_compare_mode_says_plainly_when_a_side_has_too_few_sessions(site: Site, page: Any) -> None:
    a, b = SEGMENT.format("A"), SEGMENT.format("C")
    answer = site.compare("elements", a, b)
    assert answer["status"] == "insufficient_data" and answer["b"]["sessions"] == 1
    page.goto(site.viewer(a, b))
    compared(page, "insufficient_data")
    expected = f"Not enough data to compare: A has {VISITORS} sessions, B has 1 session; at least {MIN_SESSIONS} each"
    assert expected in page.text_content("#compare-gate")
    assert page.is_visible("#compare-gate")
    assert page.locator("#compare-elements tbody tr").count() == 0
    assert expected in page.text_content("#compare-elements-status")
    shot(page, "compare-insufficient.png")
    assert page.errors == []


def test_a_malformed_side_is_the_panels_error_with_its_request_id(site: Site, page: Any) -> None:
    page.goto(site.viewer("segment=variant-A", SEGMENT.format("B")))
    compared(page, "error")
    assert page.get_attribute("#compare-panel", "data-state") == "error"
    status = page.text_content("#compare-status")
    assert "invalid_slice" in status
    assert page.text_content("#compare-status .request-id") not in ("", "(none)")
    assert page.get_attribute("#compare-elements-panel", "data-state") == "error"


def test_the_form_sets_the_sides_and_keeps_them_in_the_address(site: Site, page: Any) -> None:
    page.goto(site.viewer("", ""))
    page.wait_for_function("() => document.body.dataset.compare && !document.body.dataset.busy")
    page.fill("#a-segment", "custom:experiment.variant=A")
    page.fill("#b-segment", "custom:experiment.variant=B")
    page.click("#compare-run")
    compared(page, "ok")
    fragment = urllib.parse.parse_qs(page.evaluate("location.hash").lstrip("#"))
    assert fragment["a"] == [SEGMENT.format("A")] and fragment["b"] == [SEGMENT.format("B")]
    assert "button#buy" in table(page, "compare-elements")
    # Back to the map: the compare panels go, the map comes back; the slices stay in the address.
    page.check("input[name=mode][value=map]")
    page.wait_for_function("() => document.body.dataset.view === 'heatmap' && !document.body.dataset.busy")
    assert (
        page.is_visible("#map-panel") and page.is_hidden("#compare-panel") and page.is_hidden("#compare-elements-panel")
    )
    assert "mode=" not in page.evaluate("location.hash") and "a=segment" in page.evaluate("location.hash")

"""The demo pages' layout in numbers, shared by the templates (their CSS) and the seed (its clicks).

Every block has a fixed height and every column a width that follows from the window width, so
where an element sits on the page depends on these numbers alone, never on fonts. The column is
anchored left and capped (1,200 px wide from 768 px, 390 px below), so a window 1,280 px wide shows
the same page as one 1,300 px wide, and 390 the same as 400: the SDK rounds viewports to buckets of
100 px, and the viewer frames a page at its bucket's width. ``tests/e2e/test_demo.py`` checks these
boxes against Chromium's.
"""

from __future__ import annotations

from dataclasses import dataclass

MOBILE_BELOW = 768  # narrower windows get the narrow layout (the viewer's mobile band)
GAP = 16  # between tiles, between plan cards
SECTION_GAP = 24  # between the blocks of <main>, and above the first and below the last
LINK_H = 40  # a nav link's height, centred in the header
FIELD_H = 44  # a form row: label, input, button
FIELD_GAP = 12  # between form rows and between form columns
FORM_PAD = 16
CARD_PAD = 20
BUTTON_H = 44  # a plan card's button, at the card's bottom
FOOTER_H = 64
TOP_LINK_W = 140  # the footer's "Back to top" link, first in the footer
TALL_H = 900  # the home page's long block (so there is something to scroll)
FAQ_H = 700  # the pricing page's long block


@dataclass(frozen=True)
class Sizes:
    """The sizes that differ between the wide and the narrow layout (px)."""

    wrap_max: int  # the page column's width cap, padding included
    pad: int  # the column's side padding
    nav_h: int
    brand_w: int
    link_w: int
    bar_h: int  # the demo bar (heatmap button, viewer link), first in <main>
    hero_h: int
    tile_cols: int
    tile_h: int
    label_w: int
    button_w: int  # the coupon form's button
    plan_cols: int
    card_h: int


WIDE = Sizes(
    wrap_max=1200,
    pad=24,
    nav_h=64,
    brand_w=240,
    link_w=110,
    bar_h=44,
    hero_h=140,
    tile_cols=3,
    tile_h=90,
    label_w=160,
    button_w=200,
    plan_cols=3,
    card_h=300,
)
NARROW = Sizes(
    wrap_max=390,
    pad=16,
    nav_h=64,
    brand_w=150,
    link_w=80,
    bar_h=100,
    hero_h=200,
    tile_cols=2,
    tile_h=90,
    label_w=64,
    button_w=140,
    plan_cols=1,
    card_h=300,
)
TILES = ("buy", "cart", "info", "plans", "signup", "help")
PLANS = ("choose-free", "choose-pro", "choose-team")
NAV_LINKS = ("nav-home", "nav-pricing")  # after the brand, in the header


@dataclass(frozen=True)
class Box:
    """An element's box in page coordinates (what the SDK records: client + scroll offset)."""

    x: float
    y: float
    w: float
    h: float

    def at(self, fx: float, fy: float) -> tuple[int, int]:
        """The whole-pixel point at fractions ``fx``, ``fy`` of the box (0.5, 0.5: its centre)."""
        return round(self.x + fx * self.w), round(self.y + fy * self.h)


def sizes(width: int) -> Sizes:
    return NARROW if width < MOBILE_BELOW else WIDE


def _grid(x: float, y: float, width: float, cols: int, cell_h: float, names: tuple[str, ...]) -> dict[str, Box]:
    cell_w = (width - (cols - 1) * GAP) / cols
    return {
        name: Box(x + (i % cols) * (cell_w + GAP), y + (i // cols) * (cell_h + GAP), cell_w, cell_h)
        for i, name in enumerate(names)
    }


def _rows(count: int, cols: int, cell_h: int) -> int:
    rows = -(-count // cols)
    return rows * cell_h + (rows - 1) * GAP


def boxes(path: str, width: int) -> dict[str, Box]:
    """Boxes of the elements (by id) of the page at ``path`` in a window ``width`` px wide.

    ``"page"`` is the whole document (its height is the scroll height).
    """
    s = sizes(width)
    left = s.pad
    inner = min(width, s.wrap_max) - 2 * s.pad
    out = {
        name: Box(left + s.brand_w + i * s.link_w, (s.nav_h - LINK_H) / 2, s.link_w, LINK_H)
        for i, name in enumerate(NAV_LINKS)
    }
    y = s.nav_h + SECTION_GAP
    out["controls"] = Box(left, y, inner, s.bar_h)
    y += s.bar_h + SECTION_GAP
    out["hero"] = Box(left, y, inner, s.hero_h)
    y += s.hero_h + SECTION_GAP
    if path == "/pricing":
        cards = _grid(left, y, inner, s.plan_cols, s.card_h, PLANS)
        for name, card in cards.items():
            out[name] = Box(card.x + CARD_PAD, card.y + card.h - CARD_PAD - BUTTON_H, card.w - 2 * CARD_PAD, BUTTON_H)
        y += _rows(len(PLANS), s.plan_cols, s.card_h) + SECTION_GAP
        out["faq"] = Box(left, y, inner, FAQ_H)
        y += FAQ_H + SECTION_GAP
    else:
        out.update(_grid(left, y, inner, s.tile_cols, s.tile_h, TILES))
        y += _rows(len(TILES), s.tile_cols, s.tile_h) + SECTION_GAP
        field_x = left + FORM_PAD + s.label_w + FIELD_GAP
        field_w = inner - 2 * FORM_PAD - s.label_w - FIELD_GAP
        second = y + FORM_PAD + FIELD_H + FIELD_GAP
        out["name"] = Box(field_x, y + FORM_PAD, field_w, FIELD_H)
        out["coupon"] = Box(field_x, second, field_w - FIELD_GAP - s.button_w, FIELD_H)
        out["apply-coupon"] = Box(left + inner - FORM_PAD - s.button_w, second, s.button_w, FIELD_H)
        y += 2 * FORM_PAD + 2 * FIELD_H + FIELD_GAP + SECTION_GAP
        out["tall"] = Box(left, y, inner, TALL_H)
        y += TALL_H + SECTION_GAP
    out["to-top"] = Box(left, y + (FOOTER_H - LINK_H) / 2, TOP_LINK_W, LINK_H)
    out["page"] = Box(0, 0, width, y + FOOTER_H)
    return out

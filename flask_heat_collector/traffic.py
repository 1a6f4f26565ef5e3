"""Traffic classes (SPEC §10): each session is ``human`` or ``bot``, with the reason, decided on the
server from what the session sent, and decided again by ``flask heat reclassify`` after a rule or
list update. Backend-free; docs/traffic.md states the rules:

- **user agent**: the session's user agent (the request's ``User-Agent``, else the SDK's
  ``device.ua``) is a crawler's by the maintained list of the ``crawlerdetect`` package; the reason
  is ``user_agent:<the list's match>`` (``user_agent:Googlebot``).
- **headless**: a headless-browser marker (``HeadlessChrome``, ``PhantomJS``, ``SlimerJS`` in the
  user agent or the SDK's ``device.ua``; ``device.webdriver`` true); the reason is ``headless``.
- **regular_clicks**: ``regular_clicks`` consecutive clicks (in ts order) with no pointer move point
  between the first and the last, whose intervals differ by at most ``regular_jitter_ms`` (the
  longest minus the shortest): a script clicking on a timer.
- **fast_clicks**: ``fast_clicks`` clicks within ``fast_window_ms`` (last ts - first ts below it):
  faster than a person clicks.

The first two are decided from the session row (the first batch's agent and device) and hold for
every batch; the behaviour rules are decided again over the session's stored clicks and moves
whenever a batch with clicks arrives, so a session can turn ``bot`` after some of its batches were
counted as human (the repositories then move what it added; see ``Repository.classify_sessions``).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from crawlerdetect import CrawlerDetect

HUMAN, BOT, ALL = "human", "bot", "all"
CLASSES = (HUMAN, BOT)
TRAFFIC_CHOICES = (HUMAN, BOT, ALL)  # what ``traffic=`` accepts; HUMAN is the default
HEADLESS = "headless"
REGULAR_CLICKS, FAST_CLICKS = "regular_clicks", "fast_clicks"
_HEADLESS_MARKERS = ("HeadlessChrome", "PhantomJS", "SlimerJS")
_AGENT_REASONS = ("user_agent:", HEADLESS)


@dataclass(frozen=True)
class TrafficRules:
    """The behaviour thresholds (``HEAT_BOT_REGULAR_CLICKS``, ``HEAT_BOT_REGULAR_JITTER_MS``,
    ``HEAT_BOT_FAST_CLICKS``, ``HEAT_BOT_FAST_WINDOW_MS``)."""

    regular_clicks: int = 8
    regular_jitter_ms: int = 10
    fast_clicks: int = 20
    fast_window_ms: int = 1000


DEFAULT_RULES = TrafficRules()


class Verdict(NamedTuple):
    traffic: str  # HUMAN or BOT
    reason: str | None  # None for HUMAN


HUMAN_VERDICT = Verdict(HUMAN, None)
_lock = threading.Lock()


@lru_cache(maxsize=1)
def _detector() -> CrawlerDetect:
    from crawlerdetect import CrawlerDetect

    return CrawlerDetect()


def _crawler(user_agent: str) -> str | None:
    """The crawler list's match for ``user_agent``, ``None`` when it names no crawler."""
    with _lock:  # the detector keeps its last match on itself
        detector = _detector()
        if not detector.isCrawler(user_agent):
            return None
        return str(detector.getMatches() or "crawler")


def agent_verdict(user_agent: str | None, device_json: str | None) -> Verdict:
    """The class the session's agent and SDK device info give it (headless markers first)."""
    try:
        device = json.loads(device_json) if device_json else {}
    except ValueError:
        device = {}
    if not isinstance(device, dict):
        device = {}
    device_ua = device.get("ua") if isinstance(device.get("ua"), str) else None
    agents = [ua for ua in (user_agent, device_ua) if ua]
    if device.get("webdriver") is True or any(m in ua for ua in agents for m in _HEADLESS_MARKERS):
        return Verdict(BOT, HEADLESS)
    for ua in agents:
        match = _crawler(ua)
        if match is not None:
            return Verdict(BOT, f"user_agent:{match}")
    return HUMAN_VERDICT


def is_agent_reason(reason: str | None) -> bool:
    return reason is not None and reason.startswith(_AGENT_REASONS)


def behaviour_reason(clicks: Iterable[int], moves: Iterable[int], rules: TrafficRules) -> str | None:
    """The first behaviour rule that the session's click times and move point times break, if any."""
    times = sorted(clicks)
    k = rules.fast_clicks or len(times) + 1  # 0: the rule is off
    if any(times[i + k - 1] - times[i] < rules.fast_window_ms for i in range(len(times) - k + 1)):
        return FAST_CLICKS
    n = rules.regular_clicks
    if n and len(times) >= n:
        pointer = sorted(moves)
        for i in range(len(times) - n + 1):
            run = times[i : i + n]
            gaps = [b - a for a, b in itertools.pairwise(run)]
            if max(gaps) - min(gaps) > rules.regular_jitter_ms:
                continue
            if not _any_between(pointer, run[0], run[-1]):
                return REGULAR_CLICKS
    return None


def _any_between(sorted_times: list[int], lo: int, hi: int) -> bool:
    from bisect import bisect_left

    at = bisect_left(sorted_times, lo)
    return at < len(sorted_times) and sorted_times[at] <= hi


def verdict(
    user_agent: str | None,
    device_json: str | None,
    clicks: Iterable[int],
    moves: Callable[[], Iterable[int]],
    rules: TrafficRules,
    *,
    stored: Verdict | None = None,
) -> Verdict:
    """A session's class: its agent's, else its behaviour's. ``moves`` reads the session's move point
    times, only when a regular run of clicks needs them (pointer moves only ever clear that rule). A
    stored agent verdict of a session whose agent is no longer stored (an erased user's foreign
    session) is kept."""
    found = agent_verdict(user_agent, device_json)
    if found.traffic == BOT:
        return found
    if user_agent is None and device_json is None and stored is not None and is_agent_reason(stored.reason):
        return stored
    times = list(clicks)
    reason = behaviour_reason(times, (), rules)
    if reason == REGULAR_CLICKS:
        reason = behaviour_reason(times, moves(), rules)
    return Verdict(BOT, reason) if reason else HUMAN_VERDICT

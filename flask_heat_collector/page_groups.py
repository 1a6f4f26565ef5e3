"""Page groups (SPEC §10): route templates that name many paths as one page, applied when querying.

A template is a path of ``/``-separated segments, each one of:

- a literal (``product``): that segment, exactly (case-sensitive, no decoding);
- ``:name`` (a letter or ``_``, then letters, digits, ``_``): any one non-empty segment (the name
  only documents it);
- ``*``: any one non-empty segment (the same as an unnamed ``:name``);
- ``**``, only as the last segment: the rest of the path, zero or more segments.

Matching is anchored at both ends: ``/product/:id`` matches ``/product/123``, not ``/product`` nor
``/product/123/reviews``. One trailing slash is ignored on both sides (``/blog/x/`` is matched as
``/blog/x``; the template ``/blog/`` is ``/blog``); the root ``/`` matches only ``/`` (and ``//``).
``/docs/**`` matches ``/docs``, ``/docs/`` and everything below it, never ``/docsx``; ``/**`` every
path. A path that does not start with ``/`` matches no template. The query string a path keeps
(``HEAT_PATH_QUERY_ALLOWLIST``) takes no part: ``/product/1?variant=b`` is matched as ``/product/1``,
and a template holds no ``?``. A fragment kept by ``HEAT_HASH_ROUTES`` is part of the path
(``/app#/product/:id`` groups ``/app#/product/1``).

Backend-free: a group is resolved to the stored paths it matches, and the reports then read those
paths' keys (repositories/base.py ``EventFilter.paths``), so data stored before a template was
written is grouped as well.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

MAX_TEMPLATE = 1024  # as long as a stored path may be
MAX_GROUP_PATHS = 5000  # a group matching more paths is refused (each path is a key every report reads)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SEGMENT = r"(?:[^/?*:\x00-\x1f][^/?*\x00-\x1f]*|:[A-Za-z_][A-Za-z0-9_]*|\*)"
TEMPLATE_PATTERN = rf"^/(?:\*\*/?|{_SEGMENT}(?:/{_SEGMENT})*(?:/\*\*)?/?)?$"
"""The syntax below as one regular expression (ECMA 262 and Python alike), for the OpenAPI document;
:func:`parse` decides, and says what is wrong."""


class InvalidTemplate(ValueError):
    """A template that breaks the syntax; the message says how."""


@dataclass(frozen=True)
class Template:
    """A parsed template: its text as given and the anchored expression it matches with."""

    text: str
    pattern: re.Pattern[str]

    def matches(self, path: str) -> bool:
        """Whether ``path`` (up to its first ``?``: a kept query takes no part) is one of the group's."""
        return path.startswith("/") and self.pattern.fullmatch(path.split("?", 1)[0]) is not None


def _trimmed(text: str) -> str:
    """``text`` without one trailing slash (the root ``/`` stays)."""
    return text[:-1] if len(text) > 1 and text.endswith("/") else text


@lru_cache(maxsize=256)
def parse(text: str) -> Template:
    """The template ``text``; :class:`InvalidTemplate` when it breaks the syntax of this module."""
    if not text:
        raise InvalidTemplate("a template is a non-empty path such as /product/:id")
    if len(text) > MAX_TEMPLATE:
        raise InvalidTemplate(f"a template is at most {MAX_TEMPLATE} characters")
    if not text.startswith("/"):
        raise InvalidTemplate(f"a template starts with '/': {text!r}")
    if "//" in text:
        raise InvalidTemplate(f"a template has no empty segment ('//'): {text!r}")
    if "?" in text or any(ord(c) < 32 for c in text):
        raise InvalidTemplate(f"a template holds no '?' or control character (stored paths have none): {text!r}")
    body = _trimmed(text)
    if body == "/":
        return Template(text, re.compile(r"//?"))
    segments = body[1:].split("/")
    parts: list[str] = []
    for index, segment in enumerate(segments):
        if segment == "**":
            if index != len(segments) - 1:
                raise InvalidTemplate(f"'**' may only be the last segment: {text!r}")
            parts.append(r"(?:/.*)?")
            continue
        if segment == "*":
            parts.append(r"/[^/]+")
            continue
        if segment.startswith(":"):
            name = segment[1:]
            if not _NAME.fullmatch(name):
                raise InvalidTemplate(f"':{name}' is not a parameter name (a letter or '_', then letters, digits, '_')")
            parts.append(r"/[^/]+")
            continue
        if "*" in segment:
            raise InvalidTemplate(f"'*' and '**' are whole segments, not part of one: {segment!r}")
        parts.append("/" + re.escape(segment))
    return Template(text, re.compile("".join(parts) + "/?", re.DOTALL))


def matching(template: Template, paths: list[str] | set[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The paths ``template`` matches, sorted."""
    return tuple(sorted(p for p in paths if template.matches(p)))

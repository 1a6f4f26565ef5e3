"""The client's address behind trusted proxies, and the unit the per-IP limits count by.

``HEAT_TRUSTED_PROXIES`` = N: the client is the Nth address from the right of ``X-Forwarded-For``,
as werkzeug's ``ProxyFix(x_for=N)`` finds it; at 0 the forwarded headers are ignored. A ``ProxyFix``
that already ran (the ready app's, or one the host app applied) has set ``REMOTE_ADDR`` itself and
is not applied a second time.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

# Set by werkzeug's ProxyFix on every request it rewrote.
PROXY_FIX_MARK = "werkzeug.proxy_fix.orig"


def client_address(environ: Mapping[str, Any], trusted_proxies: int) -> str | None:
    """The address of the client that sent the request (``None`` when the server gives none)."""
    remote: str | None = environ.get("REMOTE_ADDR")
    if trusted_proxies == 0 or PROXY_FIX_MARK in environ:
        return remote
    forwarded = [part.strip() for part in str(environ.get("HTTP_X_FORWARDED_FOR", "")).split(",")]
    if len(forwarded) >= trusted_proxies and forwarded[-trusted_proxies]:
        return forwarded[-trusted_proxies]
    return remote


def limit_unit(address: str | None) -> str:
    """What a per-IP limit counts: an IPv4 address, or the /64 network of an IPv6 address.

    One IPv6 subscriber usually holds a whole /64 and can pick a new address in it for every request;
    an IPv4-mapped IPv6 address counts as its IPv4 address.
    """
    if not address:
        return "unknown"
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)

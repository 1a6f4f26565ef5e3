"""Who "one client IP" is for the per-IP limits: IPv6 clients by /64, and clients behind trusted proxies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.middleware.proxy_fix import ProxyFix

from flask_heat_collector import ConfigurationError, HeatCollector
from flask_heat_collector.wsgi import create_app

from .helpers import API, QUERY_KEY, backend_free, batch, headers


def post(client: FlaskClient, ip: str, key: str = "shop-key", forwarded: str | None = None) -> Any:
    extra = {} if forwarded is None else {"X-Forwarded-For": forwarded}
    return client.post("/ingest", json=batch(), headers=headers(key, **extra), environ_base={"REMOTE_ADDR": ip})


def statuses(answers: list[Any]) -> list[int]:
    return [answer.status_code for answer in answers]


@backend_free
def test_new_projects_per_ip_counts_an_ipv6_client_by_its_64(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    one_64 = [post(client, f"2001:db8:7:1::{i:x}", key=f"rotating-{i}") for i in range(30)]
    assert statuses(one_64) == [200] * 10 + [429] * 20  # the default "10 per hour"
    assert {answer.get_json()["code"] for answer in one_64[10:]} == {"too_many_new_projects"}
    # The neighbouring /64 is another subscriber; an IPv4-mapped address counts as its IPv4 address.
    assert post(client, "2001:db8:7:2::1", key="neighbour").status_code == 200
    mapped = make_app(new_projects_per_ip="1 per hour").test_client()
    assert statuses([post(mapped, "203.0.113.9", key="a"), post(mapped, "::ffff:203.0.113.9", key="b")]) == [200, 429]


@backend_free
def test_ingest_rate_limit_counts_an_ipv6_client_by_its_64(make_app: Callable[..., Flask]) -> None:
    client = make_app(rate_limit="3 per minute").test_client()
    answers = [post(client, f"2001:db8:7:1:{i:x}::{i:x}") for i in range(5)]
    assert statuses(answers) == [200, 200, 200, 429, 429]
    assert answers[3].get_json()["code"] == "rate_limited"
    assert post(client, "2001:db8:7:2::1").status_code == 200


@backend_free
def test_trusted_proxies_gives_each_forwarded_client_its_limits(make_app: Callable[..., Flask]) -> None:
    proxy = "10.0.0.2"
    # Default 0: forwarded headers are ignored, every client shares the proxy's address.
    shared = make_app(rate_limit="2 per minute").test_client()
    assert statuses([post(shared, proxy, forwarded=f"198.51.100.{i}") for i in range(3)]) == [200, 200, 429]

    behind_one = make_app(rate_limit="2 per minute", new_projects_per_ip="1 per hour", trusted_proxies=1).test_client()
    assert statuses([post(behind_one, proxy, forwarded=f"198.51.100.{i}") for i in range(3)]) == [200] * 3
    # What the client writes itself (left of what the proxy appended) changes nothing.
    spoofed = [post(behind_one, proxy, forwarded=f"192.0.2.{i}, 198.51.100.7") for i in range(3)]
    assert statuses(spoofed) == [200, 200, 429]
    made = [post(behind_one, proxy, key=f"new-{i}", forwarded=f"192.0.2.{i}, 198.51.100.8") for i in range(2)]
    assert statuses(made) == [200, 429]
    assert made[1].get_json()["code"] == "too_many_new_projects"
    # Fewer addresses than trusted proxies: the request came from the proxy itself.
    assert post(behind_one, proxy, key="direct", forwarded="").status_code == 200


def test_trusted_proxies_is_validated_naming_the_key(tmp_path: Path) -> None:
    for value in ("-1", "two", 1.5):
        app = Flask("proxies", instance_path=str(tmp_path))
        app.config["HEAT_TRUSTED_PROXIES"] = value
        with pytest.raises(ConfigurationError, match="HEAT_TRUSTED_PROXIES"):
            HeatCollector(app)


def ip_hash(client: FlaskClient, session: str) -> str:
    return str(client.get(f"/api/sessions/{session}", headers=API).get_json()["session"]["ipHash"])


def test_the_ready_app_applies_proxy_fix(tmp_path: Path) -> None:
    app = create_app(
        {
            "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'ready.db'}",
            "HEAT_QUERY_API_KEYS": QUERY_KEY,
            "HEAT_IP_HASH_SECRET": "secret",
            "HEAT_TRUSTED_PROXIES": "1",
        }
    )
    app.testing = True
    client = app.test_client()
    hops = {"REMOTE_ADDR": "10.0.0.2"}
    for session, forwarded in (("s-a", "198.51.100.1"), ("s-b", "192.0.2.66, 198.51.100.1"), ("s-c", "198.51.100.2")):
        body = batch(session_id=session)
        answer = client.post("/ingest", json=body, headers=headers(**{"X-Forwarded-For": forwarded}), environ_base=hops)
        assert answer.status_code == 200, answer.get_json()
    by_session = {session: ip_hash(client, session) for session in ("s-a", "s-b", "s-c")}
    # The ip hash is the client's (the spoofed left entry ignored), not the proxy's.
    assert by_session["s-a"] == by_session["s-b"] != by_session["s-c"]


def test_a_host_apps_own_proxy_fix_is_not_applied_again(tmp_path: Path) -> None:
    """The host's ProxyFix already set the client's address: the extension takes it as it is."""
    app = Flask("host", instance_path=str(tmp_path))
    app.wsgi_app = ProxyFix(app.wsgi_app, x_for=1)  # type: ignore[method-assign]
    HeatCollector(app, database_uri="sqlite://", rate_limit="1 per minute", trusted_proxies=2)
    client = app.test_client()
    # Two hops would make 192.0.2.x the client; the host's one-hop ProxyFix says 198.51.100.1.
    answers = [post(client, "10.0.0.2", forwarded=f"192.0.2.{i}, 198.51.100.1") for i in range(2)]
    assert statuses(answers) == [200, 429]

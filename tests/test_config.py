"""Configuration: validation at init_app, precedence, multi-app use, environment parsing."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_heat_collector import ConfigurationError, HeatCollector, get_state
from flask_heat_collector.config import KEYS
from flask_heat_collector.wsgi import create_app

from .helpers import batch, headers


def new_app(tmp_path: Path, **config: Any) -> Flask:
    app = Flask("cfg", instance_path=str(tmp_path / "instance"))
    app.config.update(config)
    return app


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("HEAT_AUTH_MODE", "password"),
        ("HEAT_MAX_BODY_BYTES", -1),
        ("HEAT_MAX_BODY_BYTES", "lots"),
        ("HEAT_RATE_LIMIT", "many per second"),
        ("HEAT_RATE_LIMIT_STORAGE_URI", "memcached://x"),
        ("HEAT_QUERY_AUTH", "open"),
        ("HEAT_LOG_LEVEL", "loud"),
        ("HEAT_URL_PREFIX", "no-slash"),
        ("HEAT_AUTO_MIGRATE", "maybe"),
        ("HEAT_JWT_ALGORITHMS", ["none"]),
        ("HEAT_JWT_ALGORITHMS", ["HS256"]),
        ("HEAT_ALLOWED_ORIGINS", 42),
        ("HEAT_MAX_EVENTS_PER_BATCH", 0),
        ("HEAT_DATABASE_URI", "oracle://db"),
        ("HEAT_REGISTERED_PROJECTS_ONLY", "perhaps"),
        ("HEAT_MIN_SAMPLE_SESSIONS", -1),
        ("HEAT_MIN_SAMPLE_SESSIONS", "few"),
        ("HEAT_MIN_SAMPLE_SESSIONS", 2.5),
        ("HEAT_MIN_SAMPLE_SESSIONS", True),
    ],
)
def test_bad_value_names_the_key(tmp_path: Path, key: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=key):
        HeatCollector(new_app(tmp_path, **{key: value}))


@pytest.mark.parametrize("mode", ["jwt", "both"])
def test_jwt_modes_need_jwks_issuer_audience(tmp_path: Path, mode: str) -> None:
    with pytest.raises(ConfigurationError, match="HEAT_JWKS_URL"):
        HeatCollector(new_app(tmp_path, HEAT_AUTH_MODE=mode))
    with pytest.raises(ConfigurationError, match="HEAT_JWT_AUDIENCE"):
        HeatCollector(
            new_app(tmp_path, HEAT_AUTH_MODE=mode, HEAT_JWKS_URL="http://127.0.0.1:1/jwks", HEAT_JWT_ISSUER="iss")
        )


def test_unknown_override_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="databse_uri"):
        HeatCollector(new_app(tmp_path), databse_uri="sqlite://")


def test_defaults(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    HeatCollector(app)
    settings = get_state(app).settings
    assert settings.database_uri == f"sqlite:///{tmp_path / 'instance' / 'heat-collector.db'}"
    assert (tmp_path / "instance" / "heat-collector.db").exists()
    assert settings.auth_mode == "projectKey"
    assert settings.max_body_bytes == 1_000_000
    assert settings.rate_limit == "120 per 10 seconds"
    assert settings.allowed_origins == ("*",)
    assert settings.max_events_per_batch == 1000
    assert settings.jwt_algorithms == ("RS256",)
    assert settings.ip_hash_secret_generated
    assert settings.min_sample_sessions == 30


def test_override_beats_config_and_prefix(tmp_path: Path) -> None:
    app = new_app(tmp_path, HEAT_URL_PREFIX="/from-config", HEAT_QUERY_AUTH="none")
    HeatCollector(app, url_prefix="/heat", database_uri=f"sqlite:///{tmp_path / 'x.db'}")
    client = app.test_client()
    assert client.post("/heat/ingest", json=batch(), headers=headers()).status_code == 200
    assert client.post("/from-config/ingest", json=batch(), headers=headers()).status_code == 404
    assert client.get("/heat/api/metrics").status_code == 200


def test_second_init_raises_and_one_instance_serves_two_apps(tmp_path: Path) -> None:
    heat = HeatCollector(query_auth="none")
    one = new_app(tmp_path / "one")
    two = new_app(tmp_path / "two")
    heat.init_app(one)
    heat.init_app(two)
    with pytest.raises(RuntimeError, match="already"):
        heat.init_app(one)
    one.test_client().post("/ingest", json=batch(), headers=headers())
    assert heat.metrics(one)["ingestCount"] == 1
    assert heat.metrics(two)["ingestCount"] == 0
    with one.app_context():
        assert heat.metrics()["ingestCount"] == 1


def test_blueprints_usable_on_their_own(tmp_path: Path) -> None:
    heat = HeatCollector(query_auth="none")
    ingest_only = new_app(tmp_path / "a")
    heat.init_app(ingest_only, register_blueprint=False)
    ingest_only.register_blueprint(heat.ingest_blueprint)
    client = ingest_only.test_client()
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 200
    assert client.get("/api/metrics").status_code == 404

    api_only = new_app(tmp_path / "b")
    heat.init_app(api_only, register_blueprint=False)
    api_only.register_blueprint(heat.api_blueprint, url_prefix="/q")
    client = api_only.test_client()
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 404
    response = client.get("/q/api/metrics")
    assert response.status_code == 200 and response.headers["X-Heat-Collector"] == "heat-collector"


def test_host_app_errors_stay_the_hosts(tmp_path: Path) -> None:
    app = new_app(tmp_path)
    HeatCollector(app)

    @app.route("/boom")
    def boom() -> str:
        raise ValueError("host error")

    response = app.test_client().get("/boom")
    assert response.status_code == 500
    assert "X-Heat-Collector" not in response.headers


def test_auto_migrate_off_needs_migrate_command(tmp_path: Path) -> None:
    app = new_app(tmp_path, HEAT_AUTO_MIGRATE=False)
    HeatCollector(app)
    client = app.test_client()
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 503
    result = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert result.exit_code == 0 and "created a new database" in result.output
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 200


def test_warnings_for_generated_secret_and_open_queries(tmp_path: Path, caplog: Any) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("flask_heat_collector")
    logger.addHandler(handler)
    try:
        HeatCollector(new_app(tmp_path, HEAT_QUERY_AUTH="none"))
    finally:
        logger.removeHandler(handler)
    messages = " ".join(r.getMessage() for r in records if r.levelno == logging.WARNING)
    assert "HEAT_IP_HASH_SECRET" in messages and "HEAT_QUERY_AUTH" in messages


def test_wsgi_create_app_from_environment(tmp_path: Path) -> None:
    env = {
        "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'env.db'}",
        "HEAT_QUERY_API_KEYS": "k1, k2",
        "HEAT_ALLOWED_ORIGINS": "http://a.test,http://b.test",
        "HEAT_AUTO_MIGRATE": "true",
        "HEAT_MAX_EVENTS_PER_BATCH": "50",
        "HEAT_REGISTERED_PROJECTS_ONLY": "0",
        "HEAT_IP_HASH_SECRET": "s3cret",
        "UNRELATED": "x",
    }
    app = create_app(env)
    settings = get_state(app).settings
    assert settings.query_api_keys == ("k1", "k2")
    assert settings.allowed_origins == ("http://a.test", "http://b.test")
    assert settings.max_events_per_batch == 50
    assert settings.registered_projects_only is False
    assert not settings.ip_hash_secret_generated
    assert app.test_client().get("/api/metrics", headers={"x-api-key": "k2"}).status_code == 200
    with pytest.raises(ConfigurationError, match="HEAT_MAX_EVENTS_PER_BATCH"):
        create_app({**env, "HEAT_MAX_EVENTS_PER_BATCH": "ten"})


def test_every_key_is_documented() -> None:
    docs = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    for key in KEYS:
        assert f"`{key.name}`" in docs, key.name

"""MongoDB specifics: indexes, refused index creation, outages, client per process, write errors."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pymongo.errors import BulkWriteError, DuplicateKeyError

from flask_heat_collector import HeatCollector
from flask_heat_collector.errors import ConfigurationError, StorageUnavailable
from flask_heat_collector.repositories import mongo as mongo_module
from flask_heat_collector.repositories.mongo import INDEXES, MongoRepository, client_options

from .conftest import SECANTUS_OPTIONS, unavailable
from .helpers import API, QUERY_KEY, HttpAnswer, batch, event, free_port, headers, post_batch
from .mongo_server import MongoServer

LIMITED_DB = "heat_limited"


def mongo_app(tmp_path: Path, uri: str, **overrides: Any) -> Flask:
    app = Flask("heat_mongo", instance_path=str(tmp_path))
    # synthetic clicks on a timer: the behaviour rules of the traffic classes off (as tests.helpers.Apps)
    overrides = {"bot_regular_clicks": 0, "bot_fast_clicks": 0, **overrides}
    HeatCollector(app, database_uri=uri, query_api_keys=[QUERY_KEY], ip_hash_secret="s", **overrides)
    return app


@pytest.fixture
def mongo_uri(mongo_server: MongoServer) -> Iterator[str]:
    if mongo_server.error:
        unavailable(mongo_server.error)
    database = f"heat_test_{uuid.uuid4().hex}"
    yield f"{mongo_server.uri}/{database}?{SECANTUS_OPTIONS}"
    mongo_server.drop(database)


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MongoServer]:
    """SecantusDB with --auth and a user whose role may read and write but not create indexes."""
    storage = str(tmp_path_factory.mktemp("secantus-auth"))
    setup = MongoServer(storage_path=storage)
    if setup.error is None and setup.client is not None:
        db = setup.client[LIMITED_DB]
        actions = ["find", "insert", "update", "remove"]
        db.command(
            "createRole",
            "heatWriter",
            privileges=[{"resource": {"db": LIMITED_DB, "collection": ""}, "actions": actions}],
            roles=[],
        )
        db.command("createUser", "collector", pwd="collector-pw", roles=["heatWriter"])
    setup.stop()
    server = MongoServer("--auth", storage_path=storage) if setup.error is None else setup
    yield server
    server.stop()


def test_migrate_creates_every_index_and_is_repeatable(mongo_uri: str, tmp_path: Path) -> None:
    app = mongo_app(tmp_path, mongo_uri)
    repo: MongoRepository = app.extensions["heat_collector"].repository
    result = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert result.exit_code == 0, result.output
    for collection in ("projects", "users", "sessions", "events"):
        found = {ix["name"]: (list(ix["key"]), bool(ix.get("unique"))) for ix in repo.db[collection].list_indexes()}
        expected = {name: (list(keys), unique) for coll, keys, unique, name in INDEXES if coll == collection}
        assert {name: found[name] for name in expected} == expected
    repo.dispose()


def test_refused_index_creation_warns_and_start_up_goes_on(
    limited_server: MongoServer, tmp_path: Path, logs: Any
) -> None:
    if limited_server.error:
        unavailable(limited_server.error)
    host = limited_server.uri.removeprefix("mongodb://")
    app = mongo_app(tmp_path, f"mongodb://collector:collector-pw@{host}/{LIMITED_DB}")
    warnings = [r for r in logs.records() if r["level"] == "warn" and "index" in r["msg"]]
    assert len(warnings) == 1 and "Unauthorized" in warnings[0]["msg"]
    assert "events.uq_events_project_event" in warnings[0]["indexes"]
    assert warnings[0]["database"] == LIMITED_DB

    client = app.test_client()
    response = client.post("/ingest", json=batch(event("click"), event("scroll")), headers=headers())
    assert response.status_code == 200, response.get_json()
    project = response.get_json()["projectId"]
    assert len(client.get(f"/api/projects/{project}/events", headers=API).get_json()["events"]) == 2
    assert app.test_cli_runner().invoke(args=["heat", "migrate"]).exit_code == 0
    app.extensions["heat_collector"].repository.dispose()


def test_unreachable_server_is_503(tmp_path: Path, logs: Any) -> None:
    uri = f"mongodb://127.0.0.1:{free_port()}/heat?serverSelectionTimeoutMS=200"
    app = mongo_app(tmp_path, uri, auto_migrate=False)
    client = app.test_client()
    response = client.post("/ingest", json=batch(), headers=headers())
    assert response.status_code == 503 and response.get_json()["code"] == "storage_unavailable"
    assert int(response.headers["Retry-After"]) > 0
    assert "127.0.0.1" not in response.get_data(as_text=True)
    for url in ("/api/projects/p/events", "/api/projects/p/heatmap", "/api/projects/p/sessions", "/api/sessions/s"):
        assert client.get(url, headers=API).status_code == 503, url
    with pytest.raises(StorageUnavailable):
        app.extensions["heat_collector"].repository.migrate()
    assert len([r for r in logs.records() if r.get("code") == "storage_unavailable"]) == 5


def test_database_name_and_client_options() -> None:
    assert MongoRepository("mongodb://h/fromuri", "explicit").database_name == "explicit"
    assert MongoRepository("mongodb://h:1,h:2/fromuri?replicaSet=rs").database_name == "fromuri"
    assert MongoRepository("mongodb://h/").database_name == "heat_tracker"
    assert MongoRepository("mongodb://h").database_name == "heat_tracker"
    assert client_options("mongodb://h/db") == {
        "serverSelectionTimeoutMS": 1000,
        "connectTimeoutMS": 2000,
        "socketTimeoutMS": 10000,
        "appname": "flask-heat-collector",
    }
    assert "socketTimeoutMS" not in client_options("mongodb://h/db?sockettimeoutms=99")


@pytest.mark.parametrize("overrides", [{"mongo_database": "bad.name"}, {"database_uri": "mongodb://h/bad$name"}])
def test_invalid_database_name_fails_at_init_naming_the_key(tmp_path: Path, overrides: dict[str, str]) -> None:
    options = {"database_uri": "mongodb://127.0.0.1:1/heat", "auto_migrate": False, **overrides}
    with pytest.raises(ConfigurationError, match="HEAT_MONGO_DATABASE"):
        HeatCollector(Flask("bad", instance_path=str(tmp_path)), **options)


def test_client_is_made_lazily_and_again_after_fork(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = MongoRepository(f"mongodb://127.0.0.1:{free_port()}/heat")
    assert repo._client is None
    first = repo.client
    assert repo.client is first
    monkeypatch.setattr("flask_heat_collector.repositories.mongo.os.getpid", lambda: -1)
    second = repo.client
    assert second is not first and repo.client is second
    repo.dispose()
    assert repo._client is None
    monkeypatch.undo()
    first.close()


class FakeEvents:
    def __init__(self, error: BulkWriteError) -> None:
        self.error = error

    def insert_many(self, docs: list[Any], ordered: bool) -> Any:
        assert ordered is False
        raise self.error


def test_only_duplicate_key_errors_count_as_duplicates(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = MongoRepository("mongodb://h/db")
    dup = {"code": 11000, "errmsg": "E11000 duplicate key"}
    other = {"code": 121, "errmsg": "Document failed validation"}
    errors = [dict(dup, index=1), dict(dup, index=3)]
    monkeypatch.setattr(repo, "_coll", lambda name: FakeEvents(BulkWriteError({"writeErrors": errors, "nInserted": 3})))
    assert repo._insert_events([{}] * 5) == [True, False, True, False, True]
    errors = [dict(dup, index=1), dict(other, index=3)]
    monkeypatch.setattr(repo, "_coll", lambda name: FakeEvents(BulkWriteError({"writeErrors": errors, "nInserted": 3})))
    with pytest.raises(BulkWriteError):
        repo._insert_events([{}] * 5)


def test_racing_upsert_is_retried() -> None:
    calls: list[int] = []

    def upsert() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise DuplicateKeyError("E11000 duplicate key", 11000)
        return "done"

    assert mongo_module._retry_duplicate(upsert) == "done"
    calls.clear()

    def always() -> str:
        calls.append(1)
        raise DuplicateKeyError("E11000 duplicate key", 11000)

    with pytest.raises(DuplicateKeyError):
        mongo_module._retry_duplicate(always)
    assert len(calls) == 3


def test_documents_use_the_documented_field_names(mongo_uri: str, tmp_path: Path) -> None:
    app = mongo_app(tmp_path, mongo_uri)
    client = app.test_client()
    client.post("/ingest", json=batch(event("click"), user={"id": "u"}), headers=headers())
    repo: MongoRepository = app.extensions["heat_collector"].repository
    db = repo.db
    fields = {
        "projects": "id key name createdAt",
        "users": "id projectId externalId traitsJson createdAt",
        "sessions": "projectId id userId firstUserId startedAt lastSeenAt firstPath userAgent deviceJson ipHash "
        "eventCount lastPath lastTs pending traffic trafficReason",
        "events": "projectId eventId seq sessionId userId type ts span path pathKey selector x y scrollDepth "
        "bucketW bucketH viewW rowCount points metaJson dataJson",
        "heat_aggregates": "projectId pathKey day type bucketW bucketH viewW part n firstSeq maxY cells depths",
    }
    for collection, names in fields.items():
        assert set(db[collection].find_one({}, {"_id": 0}) or {}) == set(names.split()), collection
    repo.dispose()


def test_outage_mid_load_is_503_then_recovers(tmp_path: Path, live_server: Any) -> None:
    """The server stops while batches arrive: fast 503s, recovery without a restart, each event once."""
    storage = str(tmp_path / "secantus")
    server = MongoServer(storage_path=storage)
    if server.error:
        unavailable(server.error)
    port = int(server.uri.rsplit(":", 1)[1])
    try:
        app = mongo_app(tmp_path, f"{server.uri}/heat_outage", rate_limit="100000 per second")
        url = live_server(app).url
        bodies = [batch(event("click", x=i), event("scroll"), session_id=f"s-{i % 5}") for i in range(60)]

        def send(url: str, body: dict[str, Any]) -> HttpAnswer:
            return post_batch(url, body, "outage-key")

        answers = [send(url, body) for body in bodies[:20]]
        server.stop()
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers += pool.map(lambda body: send(url, body), bodies[20:40])
        server = MongoServer(storage_path=storage, port=port)
        assert server.error is None, server.error
        answers += [send(url, body) for body in bodies[40:]]

        assert [a.status for a in answers[:20]] == [200] * 20
        for answer in answers[20:40]:
            assert (answer.status, answer.body["code"]) == (503, "storage_unavailable")
        assert [a.status for a in answers[40:]] == [200] * 20
        retried = [send(url, body) for body in bodies]  # the SDK re-sends what got 503
        assert [a.status for a in retried] == [200] * 60
        assert sum(a.body.get("accepted", 0) for a in answers + retried) == 120
        project = retried[0].body["projectId"]
        rows = app.test_client().get(f"/api/projects/{project}/events?limit=1000", headers=API).get_json()
        assert len({row["id"] for row in rows["events"]}) == rows["meta"]["count"] == 120
        app.extensions["heat_collector"].repository.dispose()
    finally:
        server.stop()

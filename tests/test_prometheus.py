"""``GET /metrics`` and the Prometheus metrics behind ``/api/metrics``, through the test client (SQLite).

The gunicorn case (three workers adding up through ``PROMETHEUS_MULTIPROC_DIR``) is
``tests/e2e/test_prometheus.py``; here a subprocess runs the same multiprocess mode with forked
processes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

from flask_heat_collector import ConfigurationError, HeatCollector

from .helpers import batch, event, free_port, headers
from .processes import run_script

KEY = "all-projects-key"
API = {"x-api-key": KEY}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def make_app(tmp_path: Path, **overrides: Any) -> Flask:
    app = Flask("prometheus_test", instance_path=str(tmp_path / "instance"))
    options: dict[str, Any] = {
        "database_uri": f"sqlite:///{tmp_path / 'heat.db'}",
        "query_api_keys": [KEY],
        "ip_hash_secret": "test-secret",
    }
    options.update(overrides)
    HeatCollector(app, **options)
    return app


def scrape(client: FlaskClient, path: str = "/metrics", **request: Any) -> Samples:
    """Every sample of ``/metrics`` parsed with prometheus_client's parser: ``(name, labels) -> value``."""
    response = client.get(path, headers=API, **request)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "text/plain"
    assert response.headers["Cache-Control"] == "no-store"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((f"heat_collector_{name}", tuple(sorted(labels.items()))), 0.0)


def move(points: int, **fields: Any) -> dict[str, Any]:
    return event("move", points=[{"x": i, "y": i, "tsOffset": i} for i in range(points)], **fields)


def test_events_batches_and_latency_are_counted_by_type_reason_and_code(tmp_path: Path) -> None:
    app = make_app(tmp_path, rate_limit="3 per hour")
    client = app.test_client()
    stored = batch(event("click"), move(3), event("input", masked="typed"), event("input"))
    assert client.post("/ingest", json=stored, headers=headers("k1")).get_json()["accepted"] == 5
    assert client.post("/ingest", json=stored, headers=headers("k1")).get_json()["duplicates"] == 5
    invalid = batch(event("click"), event("scroll"))
    del invalid["session"]
    assert client.post("/ingest", json=invalid, headers=headers("k2")).status_code == 400
    assert client.post("/ingest", data="{", headers=headers("k2")).status_code == 400
    assert client.post("/ingest", json=batch()).status_code == 401
    for _ in range(3):
        client.post("/ingest", json=batch(), headers=headers("k3"))
    assert client.post("/ingest", json=batch(), headers=headers("k3")).status_code == 429

    samples = scrape(client)
    # Rows as the ingest answer counts them: a move one per point; the unmasked input is dropped.
    assert value(samples, "events_accepted_total", type="click") == 1 + 3
    assert value(samples, "events_accepted_total", type="move") == 3
    assert value(samples, "events_accepted_total", type="input") == 1
    assert value(samples, "events_duplicate_total", type="click") == 1
    assert value(samples, "events_duplicate_total", type="move") == 3
    assert value(samples, "events_duplicate_total", type="input") == 1
    assert value(samples, "events_dropped_total", type="input", reason="unmasked_input") == 2
    assert value(samples, "events_received_total", type="input") == 4  # 2 stored + 2 dropped
    assert value(samples, "events_received_total", type="move") == 6
    assert value(samples, "events_received_total", type="scroll") == 0  # the invalid batch is not received
    assert value(samples, "events_rejected_total", code="invalid_payload") == 2
    assert value(samples, "batches_rejected_total", code="invalid_payload", status="400") == 1
    assert value(samples, "batches_rejected_total", code="invalid_json", status="400") == 1
    assert value(samples, "batches_rejected_total", code="missing_project_key", status="401") == 1
    assert value(samples, "batches_rejected_total", code="rate_limited", status="429") == 1
    assert value(samples, "rate_limited_total", limit="ingest") == 1
    assert value(samples, "rate_limited_total", limit="new_projects") == 0
    assert value(samples, "storage_errors_total") == 0

    # Five stored batches (two of k1, three of k3): the histogram counts each once.
    assert value(samples, "ingest_duration_seconds_count") == 5
    assert value(samples, "ingest_duration_seconds_bucket", le="+Inf") == 5
    assert value(samples, "ingest_duration_seconds_sum") > 0
    metrics = client.get("/api/metrics", headers=API).get_json()["metrics"]
    assert metrics["ingestCount"] == 5
    assert metrics["rejectedEventCount"] == 2
    assert metrics["ingestErrorCount"] == 0
    assert metrics["lastIngestMs"] == round(value(samples, "last_ingest_duration_seconds") * 1000)
    assert app.extensions["heat_collector"].metrics.snapshot() == metrics


def test_a_batch_partly_stored_before_is_counted_as_mixed(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    first = event("click")
    assert client.post("/ingest", json=batch(first), headers=headers()).status_code == 200
    answer = client.post("/ingest", json=batch(first, event("scroll"), event("scroll")), headers=headers()).get_json()
    assert (answer["accepted"], answer["duplicates"]) == (2, 1)
    samples = scrape(client)
    assert value(samples, "events_accepted_total", type="mixed") == 2
    assert value(samples, "events_duplicate_total", type="mixed") == 1
    assert value(samples, "events_accepted_total", type="click") == 1
    assert value(samples, "events_received_total", type="scroll") == 2


def test_storage_errors_are_counted_and_metrics_answer_while_the_database_is_down(tmp_path: Path) -> None:
    pytest.importorskip("psycopg2")
    down = f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/test"
    client = make_app(tmp_path, database_uri=down).test_client()  # its migration stays pending
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 503
    assert client.get("/api/metrics", headers=API).status_code == 503
    samples = scrape(client)
    assert value(samples, "storage_errors_total") == 1
    assert value(samples, "batches_rejected_total", code="storage_unavailable", status="503") == 1


def test_the_query_key_guards_metrics_and_a_scoped_key_is_refused(tmp_path: Path) -> None:
    client = make_app(tmp_path, query_api_keys=[KEY, "dash@p1", "dash@p2"]).test_client()
    assert client.get("/metrics").get_json()["code"] == "missing_api_key"
    assert client.get("/metrics", headers={"x-api-key": "wrong"}).get_json()["code"] == "invalid_api_key"
    scoped = client.get("/metrics", headers={"Authorization": "Bearer dash"})
    assert scoped.status_code == 403 and scoped.get_json()["code"] == "forbidden_project"
    assert scoped.headers["X-Heat-Collector"] == "heat-collector"
    assert client.get("/metrics", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_public_metrics_need_no_key(tmp_path: Path) -> None:
    client = make_app(tmp_path, prometheus_public=True, url_prefix="/heat").test_client()
    assert client.get("/heat/metrics").status_code == 200
    assert client.get("/heat/api/metrics").status_code == 401  # the query API keeps its key


def test_disabled_metrics_are_not_mounted(tmp_path: Path) -> None:
    app = Flask("off", instance_path=str(tmp_path / "instance"))
    app.config.update(HEAT_PROMETHEUS_ENABLED="false", HEAT_DATABASE_URI=f"sqlite:///{tmp_path / 'heat.db'}")
    HeatCollector(app, query_api_keys=[KEY])
    client = app.test_client()
    assert client.get("/metrics", headers=API).status_code == 404
    assert client.post("/ingest", json=batch(), headers=headers()).status_code == 200
    assert client.get("/api/metrics", headers=API).get_json()["metrics"]["ingestCount"] == 1


def test_apps_in_one_process_keep_their_own_registry(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    heat = HeatCollector(query_api_keys=[KEY], database_uri=f"sqlite:///{tmp_path / 'heat.db'}")
    one = Flask("one", instance_path=str(tmp_path / "one"))
    two = Flask("two", instance_path=str(tmp_path / "two"))
    heat.init_app(one)
    heat.init_app(two)
    one.test_client().post("/ingest", json=batch(), headers=headers())
    assert value(scrape(one.test_client()), "ingest_duration_seconds_count") == 1
    assert value(scrape(two.test_client()), "ingest_duration_seconds_count") == 0
    assert not [family.name for family in REGISTRY.collect() if family.name.startswith("heat_collector")]


def test_openmetrics_when_the_scraper_asks_for_it(tmp_path: Path) -> None:
    client = make_app(tmp_path).test_client()
    response = client.get("/metrics", headers={**API, "Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_an_unusable_multiprocess_directory_stops_the_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigurationError, match=r"PROMETHEUS_MULTIPROC_DIR=.* is not a directory"):
        make_app(tmp_path)
    # This process imported prometheus_client without the variable: its metrics would never reach the files.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    with pytest.raises(ConfigurationError, match="set after prometheus_client was imported"):
        make_app(tmp_path)


# Like gunicorn without --preload: the master loads gunicorn_conf, each forked worker builds its app.
_WORKERS_SCRIPT = """
import json, os, sys
import flask_heat_collector.gunicorn_conf as conf
assert "prometheus_client" not in sys.modules, "imported before PROMETHEUS_MULTIPROC_DIR was set"
from flask_heat_collector.wsgi import create_app
from tests.helpers import batch, event, headers

env = {"HEAT_DATABASE_URI": sys.argv[1], "HEAT_QUERY_AUTH": "none", "HEAT_IP_HASH_SECRET": "s"}
for worker in range(3):
    pid = os.fork()
    if pid == 0:
        client = create_app(env).test_client()
        for _ in range(worker + 1):
            client.post("/ingest", json=batch(event("click"), event("scroll")), headers=headers())
        client.post("/ingest", json={"events": [{}, {}]}, headers=headers())
        os._exit(0)
    os.waitpid(pid, 0)
    conf.child_exit(None, type("Worker", (), {"pid": pid}))
client = create_app(env).test_client()
print(json.dumps({
    "dir": conf._created_dir,
    "files": sorted(os.listdir(conf._created_dir)),
    "api": client.get("/api/metrics").get_json()["metrics"],
    "text": client.get("/metrics").get_data(as_text=True),
}))
conf.on_exit(None)
print(os.path.exists(conf._created_dir))
"""


def test_forked_workers_add_up_through_the_multiprocess_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["TMPDIR"] = str(tmp_path)
    result = run_script(_WORKERS_SCRIPT, f"sqlite:///{tmp_path / 'heat.db'}", env=env)
    lines = result.stdout.strip().splitlines()
    report = json.loads(lines[-2])
    assert lines[-1] == "False"  # on_exit removed the directory it made
    assert report["dir"].startswith(str(tmp_path / "heat-collector-prometheus-"))
    assert any(name.startswith("counter_") for name in report["files"])
    assert report["api"]["ingestCount"] == 1 + 2 + 3
    assert report["api"]["rejectedEventCount"] == 3 * 2
    assert isinstance(report["api"]["lastIngestMs"], int)
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(report["text"])
        for sample in family.samples
    }
    assert value(samples, "events_accepted_total", type="click") == 6
    assert value(samples, "events_rejected_total", code="invalid_payload") == 6
    assert value(samples, "ingest_duration_seconds_count") == 6


def test_a_multiprocess_directory_others_can_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    with pytest.raises(ConfigurationError, match=r"PROMETHEUS_MULTIPROC_DIR=.* has mode 0777"):
        make_app(tmp_path)
    if os.geteuid() == 0:  # only root can give a directory away
        theirs = tmp_path / "theirs"
        theirs.mkdir(mode=0o700)
        os.chown(theirs, 65534, 65534)
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(theirs))
        with pytest.raises(ConfigurationError, match=r"PROMETHEUS_MULTIPROC_DIR=.* belongs to uid 65534"):
            make_app(tmp_path)


# A plain ``gunicorn -w N`` without the configuration: the ready app names the workers' metrics
# directory after the master, so another local user can make it first. This process is the master.
_PLANTED_SCRIPT = """
import json, os, sys, tempfile
import gunicorn.arbiter  # the ready app is under gunicorn
master = os.getpid()
path = os.path.join(
    tempfile.gettempdir(), f"heat-collector-metrics-{master}-{int(os.stat(f'/proc/{master}').st_ctime)}"
)
if sys.argv[2] == "world-writable":
    os.mkdir(path)
    os.chmod(path, 0o777)
elif sys.argv[2] == "another-user":
    os.mkdir(path, 0o700)
    os.chown(path, 65534, 65534)
elif sys.argv[2] == "symlink":
    os.mkdir(path + "-elsewhere", 0o700)
    os.symlink(path + "-elsewhere", path)
read, write = os.pipe()
if os.fork() == 0:  # a worker
    from flask_heat_collector.wsgi import create_app

    try:
        client = create_app({"HEAT_DATABASE_URI": sys.argv[1], "HEAT_QUERY_AUTH": "none"}).test_client()
        metrics = client.get("/api/metrics").get_json()["metrics"]
        answer = {"metrics": metrics, "dir": os.environ["PROMETHEUS_MULTIPROC_DIR"]}
    except Exception as exc:
        answer = {"refused": f"{type(exc).__name__}: {exc}"}
    os.write(write, json.dumps(answer).encode())
    os._exit(0)
os.wait()
answer = json.loads(os.read(read, 65536))
if "dir" in answer:
    answer["mode"] = os.stat(answer["dir"]).st_mode & 0o777
print(json.dumps(answer))
"""


@pytest.mark.parametrize("planted", ["none", "world-writable", "another-user", "symlink"])
def test_the_ready_apps_metrics_directory_cannot_be_planted(tmp_path: Path, planted: str) -> None:
    if planted == "another-user" and os.geteuid() != 0:
        pytest.skip("only root can give a directory to another user")
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env["TMPDIR"] = str(tmp_path)
    result = run_script(_PLANTED_SCRIPT, f"sqlite:///{tmp_path / 'heat.db'}", planted, env=env)
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    if planted == "none":  # made by the worker, as mkdtemp would
        assert answer["mode"] == 0o700 and answer["metrics"]["ingestCount"] == 0
        return
    assert "refused" in answer, answer
    assert answer["refused"].startswith("ConfigurationError: PROMETHEUS_MULTIPROC_DIR="), answer
    expected = {"world-writable": "mode 0777", "another-user": "belongs to uid 65534", "symlink": "not a directory"}
    assert expected[planted] in answer["refused"]


def test_stored_rows_are_counted_by_traffic_class(tmp_path: Path) -> None:
    """``events_accepted_by_traffic_total{traffic}``: two series, human and bot (docs/traffic.md); a
    session a behaviour rule turns into a bot counts the batch that turned it as a bot's."""
    client = make_app(tmp_path).test_client()
    before = scrape(client)
    assert value(before, "events_accepted_by_traffic_total", traffic="human") == 0
    assert value(before, "events_accepted_by_traffic_total", traffic="bot") == 0
    googlebot = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
    client.post("/ingest", json=batch(event("click"), move(3)), headers=headers("k1"))
    client.post(
        "/ingest", json=batch(event("click"), session_id="g"), headers=headers("k1", **{"User-Agent": googlebot})
    )
    timer = [event("click", ts=1_790_000_000_000 + i * 500) for i in range(8)]
    client.post("/ingest", json=batch(*timer, session_id="t"), headers=headers("k1"))
    after = scrape(client)
    assert value(after, "events_accepted_by_traffic_total", traffic="human") == 4
    assert value(after, "events_accepted_by_traffic_total", traffic="bot") == 9

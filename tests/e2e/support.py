"""Processes and HTTP helpers of the end-to-end suite: gunicorn, a static site, the SDK from npm."""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, send_from_directory

from flask_heat_collector import HeatCollector

from .. import processes
from ..processes import APP

ROOT = Path(__file__).resolve().parents[2]
SITE = Path(__file__).resolve().parent / "site"
NODE_DIR = ROOT / "build" / "e2e-node"
SDK_PACKAGE = "@m-software-engineering/heat-sdk"
SDK_VERSION = "0.2.6"
SDK_DIR = NODE_DIR / "node_modules" / "@m-software-engineering" / "heat-sdk"
ARTIFACTS = ROOT / "build" / "e2e"
CHROMIUM = os.environ.get("HEAT_TEST_E2E_CHROMIUM", "/usr/bin/chromium")
# Headless Chromium says "HeadlessChrome" in its user agent, which the collector counts as a bot
# (docs/traffic.md); every context of the e2e tests is a desktop Chrome visitor unless a test asks
# for another agent (new_context(user_agent=...)).
DESKTOP_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
)
CHROMIUM_ARGS = [
    f"--user-agent={DESKTOP_USER_AGENT}",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
]
REDIS_URI = os.environ.get("HEAT_TEST_REDIS", "redis://127.0.0.1:6379/11")
QUERY_KEY = "e2e-query-key"
IP_HASH_SECRET = "e2e-ip-hash-secret"
WORKERS = 3
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Worker pid and request id of every answer, so a test can tell which worker served it.
ACCESS_FORMAT = "%(p)s %(m)s %(U)s %(s)s %({x-request-id}o)s"
_ACCESS_LINE = re.compile(r"^<(\d+)> (\S+) (\S+) (\d{3}) (\S+)$")


def unavailable(reason: str) -> None:
    """Fail in CI, skip locally."""
    if IN_CI:
        pytest.fail(f"end-to-end prerequisite missing in CI: {reason}")
    pytest.skip(reason)


def ensure_sdk() -> Path:
    """The SDK's ``dist`` folder, installed from npm into build/e2e-node when missing (under a file
    lock: parallel test processes install it once)."""
    NODE_DIR.mkdir(parents=True, exist_ok=True)
    with (NODE_DIR.parent / "e2e-node.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _install_sdk()


def _install_sdk() -> Path:
    manifest = SDK_DIR / "package.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("version") == SDK_VERSION:
        return SDK_DIR / "dist"
    npm = shutil.which("npm")
    if npm is None:
        unavailable("npm is needed to install the heat SDK for the end-to-end tests")
        raise AssertionError("unreachable")
    result = subprocess.run(
        [
            npm,
            "install",
            "--prefix",
            str(NODE_DIR),
            "--no-audit",
            "--no-fund",
            "--no-package-lock",
            f"{SDK_PACKAGE}@{SDK_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0 or not (SDK_DIR / "dist" / "index.mjs").exists():
        unavailable(f"npm install {SDK_PACKAGE}@{SDK_VERSION} failed: {result.stderr[-500:]}")
    return SDK_DIR / "dist"


# -- HTTP --------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


def http(method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None) -> Answer:
    """One request on a fresh connection (urllib opens one per request)."""
    data = None if body is None else json.dumps(body).encode()
    # a visitor's agent unless one is given: urllib's own (Python-urllib) is a crawler's (docs/traffic.md)
    request = urllib.request.Request(
        url, data=data, method=method, headers={"User-Agent": DESKTOP_USER_AGENT, **(headers or {})}
    )
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(
                response.status, {k.lower(): v for k, v in response.headers.items()}, response.read().decode()
            )
    except urllib.error.HTTPError as err:
        with err:
            return Answer(err.code, {k.lower(): v for k, v in err.headers.items()}, err.read().decode())


# -- gunicorn ----------------------------------------------------------------------------------


@dataclass
class Collector:
    """The collector running under gunicorn, and what it wrote."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    access_path: Path
    env: dict[str, str]
    answers: list[Answer] = field(default_factory=list)

    def api(self, endpoint: str, /, **params: Any) -> Answer:
        """A query-API call with the key; every answer is kept for later checks."""
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        url = f"{self.url}/api{endpoint}" + (f"?{query}" if query else "")
        answer = http("GET", url, headers={"x-api-key": QUERY_KEY})
        self.answers.append(answer)
        return answer

    def api_json(self, endpoint: str, /, **params: Any) -> Any:
        answer = self.api(endpoint, **params)
        assert answer.status == 200, answer.text
        return answer.json()

    def all_events(self, project_id: str, **params: Any) -> list[dict[str, Any]]:
        """Every event row of the project, through the paginated events API."""
        found: list[dict[str, Any]] = []
        while True:
            page = self.api_json(f"/projects/{project_id}/events", limit=1000, offset=len(found), **params)
            found.extend(page["events"])
            if len(page["events"]) < 1000:
                return found

    def ingest(self, project_key: str, body: Any) -> Answer:
        return http("POST", f"{self.url}/ingest", body, {"x-project-key": project_key})

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") + self.access_path.read_text(errors="replace")

    def access(self) -> list[tuple[int, str, str, int, str]]:
        """``(pid, method, path, status, request id)`` of every answered request."""
        rows = []
        for line in self.access_path.read_text().splitlines():
            match = _ACCESS_LINE.match(line.strip())
            if match:
                pid, method, path, status, rid = match.groups()
                rows.append((int(pid), method, path, int(status), rid))
        return rows

    def worker_of(self, request_id: str) -> int:
        """The pid of the worker that answered ``request_id`` (the access log is written after the answer)."""
        deadline = time.monotonic() + 10
        while True:
            for pid, _method, _path, _status, rid in self.access():
                if rid == request_id:
                    return pid
            if time.monotonic() > deadline:
                raise AssertionError(f"request {request_id} not in the access log")
            time.sleep(0.05)


def collector_env(tmp: Path, **env: str) -> dict[str, str]:
    """The environment of a collector: the parent's minus its HEAT_* variables, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("HEAT_")}
    base.update(
        HEAT_DATABASE_URI=f"sqlite:///{tmp / 'heat.db'}",
        HEAT_QUERY_API_KEYS=QUERY_KEY,
        HEAT_IP_HASH_SECRET=IP_HASH_SECRET,
        HEAT_ALLOWED_ORIGINS="*",
        # Every run makes new projects from 127.0.0.1, counted in the shared Redis for an hour.
        HEAT_NEW_PROJECTS_PER_IP="100000 per hour",
        PYTHONUNBUFFERED="1",
    )
    base.update(env)
    return base


def spawn_gunicorn(
    options: list[str], env: Mapping[str, str], log_path: Path, app: str = APP
) -> subprocess.Popen[bytes]:
    """``gunicorn OPTIONS APP`` in the background, its output in ``log_path`` (stop it with ``_stop``)."""
    if not processes.gunicorn_available():
        unavailable("gunicorn is not installed (scripts/ensure-venv, or pip install --group test)")
    return processes.spawn_gunicorn(options, env, log_path, app)


# The suite's names for the shared helpers of tests/processes.py.
_stop = processes.stop
_wait_listening = processes.wait_listening


@contextmanager
def run_collector(tmp: Path, app: str = APP, *, config: Sequence[str] = (), **env: str) -> Iterator[Collector]:
    """``gunicorn [CONFIG] -w 3 APP`` on a free loopback port, configured by ``HEAT_*`` variables; always stopped."""
    tmp.mkdir(parents=True, exist_ok=True)
    log_path, access_path = tmp / "gunicorn.log", tmp / "access.log"
    access_path.touch()
    full_env = collector_env(tmp, **env)
    full_env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # a server of its own: never the caller's metrics
    options = [
        *config,
        *("-w", str(WORKERS), "-b", "127.0.0.1:0", "--chdir", str(ROOT), "--graceful-timeout", "5"),
        *("--access-logfile", str(access_path), "--access-logformat", ACCESS_FORMAT),
    ]
    process = spawn_gunicorn(options, full_env, log_path, app)
    try:
        url = _wait_listening(process, log_path)
        collector = Collector(url, process, log_path, access_path, full_env)
        _wait_ready(collector)
        yield collector
    finally:
        _stop(process)


def _wait_ready(collector: Collector) -> None:
    """Until every worker has booted and one answers."""

    def ready() -> bool:
        booted = collector.log_path.read_text(errors="replace").count("Booting worker")
        return booted >= WORKERS and processes.answers(f"{collector.url}/api/metrics", {"x-api-key": QUERY_KEY})

    processes.wait_ready(collector.process, ready, collector.log_path, "gunicorn workers not ready")


def register_project(env: Mapping[str, str], key: str) -> str:
    """Register ``key`` with ``flask heat project create`` on the collector's database; its project id."""
    from flask_heat_collector.wsgi import create_app

    app = create_app(env)
    try:
        result = app.test_cli_runner().invoke(args=["heat", "project", "create", "--name", "e2e", "--key", key])
        assert result.exit_code == 0, result.output
        return result.output.split("\t")[0].strip()
    finally:
        app.extensions["heat_collector"].repository.dispose()


# -- the page's origin -------------------------------------------------------------------------


class _SiteHandler(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map, ".mjs": "text/javascript", ".js": "text/javascript"}

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def static_site(root: Path, sdk_dist: Path) -> Iterator[str]:
    """A static server on another port (another origin): the test page and the SDK under /sdk/."""
    shutil.copytree(SITE, root, dirs_exist_ok=True)
    shutil.copytree(sdk_dist, root / "sdk", dirs_exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_SiteHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- what the SDK sent ----------------------------------------------------------------------

# Set before the page loads: the SDK's config, and a fetch wrapper keeping every ingest answer in
# window.__ingest ({status, body}) (Playwright cannot read the bodies of the SDK's keepalive fetches).
INIT_SCRIPT = """
window.HEAT_E2E = %s;
window.__ingest = [];
const realFetch = window.fetch.bind(window);
window.fetch = async (input, init) => {
  const response = await realFetch(input, init);
  if (String(input) === window.HEAT_E2E.endpoint) {
    let body = null;
    try { body = await response.clone().json(); } catch (err) { body = null; }
    window.__ingest.push({ status: response.status, retryAfter: response.headers.get("Retry-After"), body });
  }
  return response;
};
"""


def init_script(config: dict[str, Any]) -> str:
    return INIT_SCRIPT % json.dumps(config)


def sdk_script(before: str = "", after: str = "") -> str:
    """A tracked page's module script: the SDK from ``/sdk/`` set up from ``window.HEAT_E2E``, moves not
    captured. ``before`` runs first, ``after`` once ``window.tracker`` exists (lines of JavaScript)."""
    return (
        '<script type="module">\n'
        '  import { init } from "/sdk/index.mjs";\n'
        f"{before}"
        "  // window.HEAT_E2E is set by the test before the page loads (the viewer's frame runs no script).\n"
        "  const config = window.HEAT_E2E;\n"
        "  if (config) {\n"
        "    window.tracker = init({\n"
        "      endpoint: config.endpoint,\n"
        "      projectKey: config.projectKey,\n"
        "      batch: { flushIntervalMs: config.flushIntervalMs },\n"
        "      capture: { move: { enabled: false } },\n"
        "      privacy: { respectDoNotTrack: false },\n"
        "    });\n"
        f"{after}"
        "    window.heatReady = true;\n"
        "  }\n"
        "</script>"
    )


def tracked_app(
    name: str,
    database_uri: str,
    sdk_dist: Path,
    pages: Mapping[str, str],
    *,
    query_key: str,
    instance_path: Path | None = None,
    **config: Any,
) -> Flask:
    """One origin for the collector, its viewer and the tracked ``pages`` (path -> HTML), the SDK under
    ``/sdk/``; ``config`` adds to the ``HEAT_*`` settings (the IP hash secret is ``name`` in dashes)."""
    app = Flask(name, instance_path=None if instance_path is None else str(instance_path))
    app.config.update(
        HEAT_DATABASE_URI=database_uri,
        HEAT_QUERY_API_KEYS=[query_key],
        HEAT_IP_HASH_SECRET=name.replace("_", "-"),
        HEAT_VIEWER_ENABLED=True,
        **config,
    )
    HeatCollector().init_app(app)
    for path, html in pages.items():
        app.add_url_rule(path, path, lambda html=html: Response(html, mimetype="text/html"))

    @app.get("/sdk/<path:name>")
    def sdk(name: str) -> Response:
        return send_from_directory(sdk_dist, name, mimetype="text/javascript")

    return app


@contextmanager
def sdk_visit(
    browser: Any, endpoint: str, project_key: str, url: str, *, flush_interval_ms: int = 60_000, **context: Any
) -> Iterator[Any]:
    """A visitor: a tab in a context of its own (a new session; ``context`` as ``new_context`` takes it)
    at ``url``, once the SDK there is ready to send ``project_key``'s batches to ``endpoint``."""
    visitor = browser.new_context(**context)
    try:
        tab = visitor.new_page()
        config = {"endpoint": endpoint, "projectKey": project_key, "flushIntervalMs": flush_interval_ms}
        tab.add_init_script(script=init_script(config))
        tab.goto(url)
        tab.wait_for_function("window.heatReady === true")
        yield tab
    finally:
        visitor.close()


def delivered(tab: Any) -> str:
    """Flush the tab's SDK until its queue is delivered, every batch answered 200; the project id."""
    tab.evaluate("() => window.tracker.flush()")
    wait_until(
        lambda: tab.evaluate("window.tracker.queue.length === 0 && window.__ingest.length > 0"),
        30,
        "the SDK did not deliver its queue",
        page=tab,
    )
    answers = tab.evaluate("window.__ingest")
    assert [a["status"] for a in answers] == [200] * len(answers), answers
    project: str = answers[0]["body"]["projectId"]
    return project


def rows_of(bodies: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """The rows the collector should store for these batches: ``(eventId, point index) -> event``."""
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    for body in bodies:
        for event in body["events"]:
            if event["type"] == "move":
                for index in range(len(event["points"])):
                    rows[(event["eventId"], index)] = event
            else:
                rows[(event["eventId"], 0)] = event
    return rows


def stored_rows(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    """``(eventId, point index)`` of event JSON (``id`` is ``<eventId>:<index>``)."""
    return [(e["eventId"], int(e["id"].rsplit(":", 1)[1])) for e in events]


def wait_until(condition: Any, timeout: float, message: str, page: Any = None) -> None:
    """Poll ``condition()`` until it is true; fail after ``timeout`` seconds (a bound, not a measurement).

    With a Playwright ``page`` the pause is ``page.wait_for_timeout``, so the page's events keep
    being delivered while waiting (a plain sleep would hold them back).
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(message)
        if page is not None:
            page.wait_for_timeout(100)
        else:
            time.sleep(0.1)


@contextmanager
def viewer_tab(browser: Any, width: int, height: int) -> Iterator[Any]:
    """A tab in a context of its own, ``width`` x ``height``; ``tab.errors`` collects its script errors."""
    context = browser.new_context(viewport={"width": width, "height": height})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.errors = errors
    try:
        yield tab
    finally:
        context.close()


# The start of png_eval's scripts: the PNG in ``b64`` drawn on a canvas ``c`` with its 2D context ``ctx``.
_PNG_ON_CANVAS = """
    const img = new Image();
    img.src = "data:image/png;base64," + b64;
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.width; c.height = img.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
"""


def png_eval(browser: Any, data: bytes, names: str, body: str, *args: Any) -> Any:
    """What ``body`` (JavaScript) returns on a blank page, with the PNG ``data`` decoded by Chromium onto
    a canvas ``c`` (2D context ``ctx``) and ``args`` bound to ``names`` (comma-separated)."""
    tab = browser.new_page()
    try:
        script = f"async ([b64, {names}]) => {{{_PNG_ON_CANVAS}{body}}}"
        return tab.evaluate(script, [base64.b64encode(data).decode(), *args])
    finally:
        tab.close()

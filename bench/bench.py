"""Side-by-side benchmark of flask-heat-collector and the Express original (see bench/run --help).

For each database: ingest throughput under wrk with realistic SDK batches (the two servers
measured alternately, in their best configuration and as one worker vs one node process), then
1,000,000 events bulk-filled into both schemas and the heatmap, events-page and sessions-list
queries timed (median of several runs), with the peak RSS of every server process.
Everything listens on 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NODE_DIR = BENCH / "node"
ORIGINAL = "@m-software-engineering/heat-collector"
ORIGINAL_VERSION = "0.3.7"
NODE_PACKAGES = [f"{ORIGINAL}@{ORIGINAL_VERSION}", "express@4", "better-sqlite3@11", "pg@8", "mysql2@3", "mongodb@6"]
EVENTS_PER_BATCH = 20  # bench/ingest.lua
PG_ADMIN = os.environ.get("BENCH_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/mysql")
sys.path[:0] = [str(ROOT), str(BENCH)]

import amplification  # noqa: E402
import fill  # noqa: E402


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kwargs: Any) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    return done.stdout.strip()


def _wait_port(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing listens on port {port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- tools ---------------------------------------------------------------------------------------


def ensure_tools() -> dict[str, str]:
    """wrk, the original from npm (in bench/node), gunicorn; returns notes for the report."""
    notes: dict[str, str] = {}
    if shutil.which("wrk") is None:
        log("installing wrk (apt-get install -y wrk)")
        if subprocess.run(["apt-get", "install", "-y", "wrk"], capture_output=True).returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True)
            run(["apt-get", "install", "-y", "wrk"])
    installed = NODE_DIR / "node_modules" / ORIGINAL / "package.json"
    if not installed.exists() or json.loads(installed.read_text())["version"] != ORIGINAL_VERSION:
        NODE_DIR.mkdir(exist_ok=True)
        (NODE_DIR / "package.json").write_text(
            json.dumps(
                {
                    "name": "heat-collector-bench-original",
                    "private": True,
                    "type": "module",
                    # npm >= 11.16 reads install-script approvals from here (its --allow-scripts flag
                    # is refused in project installs); older npm ignores the field and runs scripts.
                    "allowScripts": {"better-sqlite3": True},
                }
            )
            + "\n"
        )
        log(f"npm install {' '.join(NODE_PACKAGES)} (into bench/node)")
        npm = ["npm", "install", "--no-audit", "--no-fund"]
        run([*npm, *NODE_PACKAGES], cwd=NODE_DIR)
        if subprocess.run(["node", "-e", "new (require('better-sqlite3'))(':memory:')"], cwd=NODE_DIR).returncode:
            log("better-sqlite3@11 does not load on this Node; installing better-sqlite3@12")
            run([*npm, "better-sqlite3@12"], cwd=NODE_DIR)
    probe = "new (require('better-sqlite3'))(':memory:'); console.log(require('better-sqlite3/package.json').version)"
    notes["better-sqlite3"] = run(["node", "-e", probe], cwd=NODE_DIR)
    shutil.copy(BENCH / "original-server.mjs", NODE_DIR / "original-server.mjs")
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        run([sys.executable, "-m", "pip", "install", "-q", "gunicorn"])
    return notes


def versions(notes: dict[str, str]) -> dict[str, str]:
    def node_pkg(name: str) -> str:
        return json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"]

    import sqlite3

    import sqlalchemy

    result = {
        "machine": f"{os.cpu_count()} cores ({_cpu_model()}), {_mem_gib():.0f} GiB RAM, {platform.platform()}",
        "python": platform.python_version(),
        "gunicorn": _py_version("gunicorn"),
        "flask": _py_version("flask"),
        "sqlalchemy": sqlalchemy.__version__,
        "sqlite (python)": sqlite3.sqlite_version,
        "node": run(["node", "--version"]),
        ORIGINAL: node_pkg(ORIGINAL),
        "express": node_pkg("express"),
        "better-sqlite3": notes.get("better-sqlite3", node_pkg("better-sqlite3")),
        "pg / mysql2": f"{node_pkg('pg')} / {node_pkg('mysql2')}",
        "wrk": _wrk_version(),
    }
    for name, admin in (("postgresql", PG_ADMIN), ("mariadb", MYSQL_ADMIN)):
        try:
            import sqlalchemy as sa

            engine = sa.create_engine(admin)
            with engine.connect() as conn:
                result[name] = str(conn.exec_driver_sql("SELECT version()").scalar()).split(" on ")[0]
            engine.dispose()
        except Exception as exc:  # noqa: BLE001
            result[name] = f"unavailable ({type(exc).__name__})"
    return result


def _py_version(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _wrk_version() -> str:
    out = subprocess.run(["wrk", "--version"], capture_output=True, text=True)
    return (out.stdout + out.stderr).splitlines()[0].strip()


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def _mem_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal"):
            return int(line.split()[1]) / 1024 / 1024
    return 0.0


# -- databases -----------------------------------------------------------------------------------


class Databases:
    """Throw-away databases named heat_bench_*, dropped when done."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.created: list[tuple[str, str]] = []

    mongo: subprocess.Popen[bytes] | None = None
    mongo_port = 0

    def create(self, dialect: str, label: str) -> tuple[str, str]:
        """(our database URI, the original's connection string) of a new empty database."""
        name = f"heat_bench_{label}_{uuid.uuid4().hex[:6]}"
        if dialect == "mongo":
            if self.mongo is None:
                # SecantusDB: a MongoDB-wire-compatible server in Python, not real MongoDB.
                self.mongo_port = free_port()
                store = self.workdir / "secantus"
                store.mkdir(exist_ok=True)
                self.mongo = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "secantus",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(self.mongo_port),
                        "--storage-path",
                        str(store),
                    ],
                    stdout=(self.workdir / "secantus.log").open("wb"),
                    stderr=subprocess.STDOUT,
                )
                _wait_port(self.mongo_port)
            uri = f"mongodb://127.0.0.1:{self.mongo_port}/{name}"
            return uri, uri
        if dialect == "sqlite":
            path = self.workdir / f"{name}.db"
            return f"sqlite:///{path}", str(path)
        import sqlalchemy as sa

        admin = PG_ADMIN if dialect == "postgresql" else MYSQL_ADMIN
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        self.created.append((dialect, name))
        url = sa.make_url(admin).set(database=name)
        ours = url.render_as_string(hide_password=False)
        native = url.set(drivername="postgres" if dialect == "postgresql" else "mysql")
        return ours, native.render_as_string(hide_password=False)

    def stop_mongo(self) -> None:
        if self.mongo is not None:
            self.mongo.terminate()
            self.mongo.wait(timeout=30)
            self.mongo = None

    def drop_all(self) -> None:
        import sqlalchemy as sa

        for dialect, name in self.created:
            admin = PG_ADMIN if dialect == "postgresql" else MYSQL_ADMIN
            engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
            with engine.connect() as conn:
                if dialect == "postgresql":
                    conn.exec_driver_sql(
                        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"
                    )
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
            engine.dispose()
        self.created.clear()
        for path in self.workdir.glob("heat_bench_*"):
            path.unlink()


# -- servers -------------------------------------------------------------------------------------


@dataclass
class Config:
    """How a server runs: ours under gunicorn (workers, worker class, threads) or node (cluster size)."""

    server: str  # "ours" | "original"
    workers: int = 1
    worker_class: str = "sync"
    threads: int = 1

    @property
    def label(self) -> str:
        if self.server == "ours":
            extra = f" --threads {self.threads}" if self.worker_class == "gthread" else ""
            return f"gunicorn -w {self.workers} -k {self.worker_class}{extra}"
        return "node, 1 process" if self.workers == 0 else f"node:cluster, {self.workers} workers"


class Server:
    """One server process group on a loopback port; samples VmHWM of all its processes."""

    def __init__(self, config: Config, dialect: str, uri: str, native: str, logdir: Path) -> None:
        self.config = config
        self.port = free_port()
        self.peak: dict[int, int] = {}
        env = dict(os.environ)
        if config.server == "ours":
            env.update(
                PYTHONPATH=str(ROOT),
                HEAT_DATABASE_URI=uri,
                HEAT_RATE_LIMIT="1000000000 per 10 seconds",
                HEAT_QUERY_AUTH="none",
                HEAT_IP_HASH_SECRET="bench-secret",
                HEAT_LOG_LEVEL="warn",
            )
            cmd = [sys.executable, "-m", "gunicorn", "-w", str(config.workers), "-k", config.worker_class]
            if config.worker_class == "gthread":
                cmd += ["--threads", str(config.threads)]
            cmd += ["-b", f"127.0.0.1:{self.port}", "--backlog", "2048", "--timeout", "300", "--graceful-timeout", "5"]
            cmd += ["flask_heat_collector.wsgi:create_app()"]
        else:
            env.update(
                HEAT_DIALECT={"postgresql": "pg", "mongo": "mongodb"}.get(dialect, dialect),
                DATABASE_URL=native,
                SQLITE_FILE=native,
                PORT=str(self.port),
                RATE_MAX="1000000000",
                LOG_LEVEL="warn",
                NODE_WORKERS=str(config.workers),
            )
            cmd = ["node", str(NODE_DIR / "original-server.mjs")]
        self.log_path = logdir / f"{config.server}-{dialect}-{self.port}.log"
        self.log_file = self.log_path.open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        self._stop = threading.Event()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self._sampler.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.config.label} exited; see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + "/api/metrics", timeout=2) as r:
                    if r.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                time.sleep(0.2)
        raise RuntimeError(f"{self.config.label} did not start; see {self.log_path}")

    def pids(self) -> list[int]:
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[2]) == self.proc.pid:  # process group
                    found.append(int(entry.name))
        return found

    def sample(self) -> None:
        for pid in self.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            match = re.search(r"VmHWM:\s+(\d+) kB", status)
            if match:
                self.peak[pid] = max(self.peak.get(pid, 0), int(match[1]) * 1024)

    def _sample_loop(self) -> None:
        while not self._stop.wait(0.5):
            self.sample()

    def reset_peak(self) -> None:
        """Forget the peaks so far (Linux: writing 5 to clear_refs resets VmHWM)."""
        for pid in self.pids():
            try:
                Path(f"/proc/{pid}/clear_refs").write_text("5")
            except OSError:
                pass
        self.peak.clear()

    def peak_rss(self) -> int:
        """Sum over the process group (gunicorn master + workers, node primary + workers)."""
        self.sample()
        return sum(self.peak.values())

    def stop(self) -> None:
        self._stop.set()
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log_file.close()


# -- load ----------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    requests: int = 0
    seconds: float = 0.0
    non2xx: int = 0
    socket_errors: int = 0
    p50_ms: list[float] = field(default_factory=list)
    p99_ms: list[float] = field(default_factory=list)

    def add(self, wrk: dict[str, Any]) -> None:
        self.requests += wrk["requests"]
        self.seconds += wrk["duration_us"] / 1e6
        self.non2xx += wrk["non2xx"]
        self.socket_errors += wrk["connect"] + wrk["read"] + wrk["write"] + wrk["timeout"]
        self.p50_ms.append(wrk["p50_us"] / 1000)
        self.p99_ms.append(wrk["p99_us"] / 1000)

    @property
    def events_per_s(self) -> float:
        """Events of the batches answered 2xx, per second."""
        return (self.requests - self.non2xx) * EVENTS_PER_BATCH / self.seconds if self.seconds else 0.0


def wrk(server: Server, seconds: float, connections: int, key: str) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    cmd += [
        "-s",
        str(BENCH / "ingest.lua"),
        server.base + "/ingest",
        "--",
        uuid.uuid4().hex[:10],
        key,
        str(connections),
    ]
    out = run(cmd)
    line = next(line for line in out.splitlines() if line.startswith("WRKJSON "))
    return json.loads(line[len("WRKJSON ") :])


# -- the benchmark -------------------------------------------------------------------------------


@dataclass
class Options:
    dialects: list[str]
    seconds: float
    warmup: float
    rounds: int
    connections: int
    search: bool
    search_seconds: float
    rows: int
    mongo_rows: int
    query_runs: int
    scale_rows: int
    quick: bool
    out: Path


OURS_CANDIDATES = [
    Config("ours", 2, "sync"),
    Config("ours", 4, "sync"),
    Config("ours", 2, "gthread", 4),
    Config("ours", 4, "gthread", 4),
]
ORIGINAL_CANDIDATES = [Config("original", 0), Config("original", 2)]
OURS_DEFAULT_BEST = Config("ours", 4, "sync")
# One worker against one node process: a sync worker serves one request at a time, a gthread worker
# overlaps database waits as node's event loop does (still one process, one GIL).
OURS_SINGLE_CANDIDATES = [Config("ours", 1, "sync"), Config("ours", 1, "gthread", 4)]
OURS_DEFAULT_SINGLE = Config("ours", 1, "gthread", 4)
ORIGINAL_DEFAULT_BEST = Config("original", 0)


class Bench:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.workdir = Path(tempfile.mkdtemp(prefix="heat-bench-"))
        self.dbs = Databases(self.workdir)
        self.results: dict[str, dict[str, Any]] = {}
        self.search_log: dict[str, list[tuple[str, float, int]]] = {}

    def start(self, config: Config, dialect: str, label: str) -> Server:
        uri, native = self.dbs.create(dialect, label)
        return Server(config, dialect, uri, native, self.workdir)

    def try_config(self, config: Config, dialect: str) -> tuple[float, int]:
        server = self.start(config, dialect, "search")
        try:
            wrk(server, self.opts.warmup, self.opts.connections, "bench-search")
            result = wrk(server, self.opts.search_seconds, self.opts.connections, "bench-search")
        finally:
            server.stop()
        self.dbs.drop_all()
        events = (result["requests"] - result["non2xx"]) * EVENTS_PER_BATCH / (result["duration_us"] / 1e6)
        errors = result["non2xx"] + result["timeout"] + result["connect"] + result["read"] + result["write"]
        log(f"  {dialect:10} {config.label:32} {events:10.0f} events/s  errors {errors}")
        self.search_log.setdefault(dialect, []).append((config.label, events, errors))
        return events, errors

    def best(self, candidates: list[Config], dialect: str, default: Config) -> Config:
        if not self.opts.search:
            return default
        scored = [(self.try_config(c, dialect), c) for c in candidates]
        clean = [item for item in scored if item[0][1] == 0] or scored
        return max(clean, key=lambda item: item[0][0])[1]

    def ingest_pair(self, dialect: str, ours_cfg: Config, orig_cfg: Config | None) -> dict[str, Any]:
        """Both servers up on fresh databases, measured alternately (ours first, then original)."""
        servers = {"ours": self.start(ours_cfg, dialect, "ours")}
        if orig_cfg is not None:
            servers["original"] = self.start(orig_cfg, dialect, "orig")
        results = {name: LoadResult() for name in servers}
        try:
            for server in servers.values():
                wrk(server, self.opts.warmup, self.opts.connections, "bench-warmup")
                server.reset_peak()
            for round_no in range(self.opts.rounds):
                for name, server in servers.items():
                    out = wrk(server, self.opts.seconds, self.opts.connections, "bench-project")
                    results[name].add(out)
                    rate = (out["requests"] - out["non2xx"]) * EVENTS_PER_BATCH / (out["duration_us"] / 1e6)
                    log(
                        f"  {dialect:10} round {round_no + 1} {name:8} {servers[name].config.label:32} "
                        f"{rate:10.0f} events/s  p50 {out['p50_us'] / 1000:7.1f} ms  "
                        f"p99 {out['p99_us'] / 1000:7.1f} ms  non-2xx {out['non2xx']}"
                    )
            rss = {name: server.peak_rss() for name, server in servers.items()}
        finally:
            for server in servers.values():
                server.stop()
            self.dbs.drop_all()
        return {
            name: {
                "config": servers[name].config.label,
                "events_per_s": r.events_per_s,
                "p50_ms": statistics.median(r.p50_ms),
                "p99_ms": max(r.p99_ms),
                "non2xx": r.non2xx,
                "socket_errors": r.socket_errors,
                "peak_rss": rss[name],
            }
            for name, r in results.items()
        }

    def _side_by_side(
        self,
        dialect: str,
        what: str,
        fill_ours: Callable[[str, int], tuple[float, float]],
        fill_original: Callable[[str, int], float],
        paths: dict[str, str],
    ) -> dict[str, Any]:
        """Fill both schemas with the same ``rows`` of ``what``, then time ``paths`` on both servers."""
        rows = self.opts.rows
        ours_uri, _ = self.dbs.create(dialect, "q_ours")
        orig_uri, orig_native = self.dbs.create(dialect, "q_orig")
        original = Server(Config("original", 0), dialect, orig_uri, orig_native, self.workdir)  # autoMigrate
        ours: Server | None = None
        try:
            log(f"  {dialect}: filling {rows:,} {what} into each schema")
            t_ours, t_rebuild = fill_ours(ours_uri, rows)
            t_orig = fill_original(orig_uri, rows)
            log(
                f"  {dialect}: filled in {t_ours:.1f} s + {t_rebuild:.1f} s aggregates (ours, with its indexes) "
                f"and {t_orig:.1f} s (original)"
            )
            ours = Server(Config("ours", 1, "sync"), dialect, ours_uri, "", self.workdir)
            servers = {"ours": ours, "original": original}
            for server in servers.values():
                server.reset_peak()
            timings, bodies = self._time_queries(dialect, servers, paths)
            rss = {name: server.peak_rss() for name, server in servers.items()}
            return {
                "timings": timings,
                "rss": rss,
                "checks": _compare(bodies, paths),
                "fill": [t_ours, t_orig],
                "rebuild_s": t_rebuild,
                "rows": rows,
            }
        finally:
            original.stop()
            if ours is not None:
                ours.stop()
            self.dbs.drop_all()

    def queries(self, dialect: str) -> dict[str, Any]:
        """Fill both schemas with the same events, then time the query APIs on both servers."""
        if dialect == "mongo":
            return self.mongo_queries()
        return self._side_by_side(dialect, "events", fill.fill_ours, fill.fill_original, _query_paths())

    def _time_queries(
        self, dialect: str, servers: dict[str, Server], paths: dict[str, str]
    ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
        timings: dict[str, dict[str, float]] = {}
        bodies: dict[str, dict[str, Any]] = {}
        for label, path in paths.items():
            timings[label] = {}
            for name, server in servers.items():
                samples, body = _time_get(server.base + path, self.opts.query_runs)
                timings[label][name] = statistics.median(samples)
                bodies[f"{label}/{name}"] = body
                log(f"  {dialect:10} {label:34} {name:8} median {timings[label][name]:9.1f} ms  runs {samples}")
        return timings, bodies

    def spread(self, dialect: str) -> dict[str, Any]:
        """Move points spread uniformly over 1280 x 3000 on one path: the heatmap on both servers."""
        p = fill.PROJECT_ID
        paths = {"heatmap (spread moves, default)": f"/api/projects/{p}/heatmap?path={fill.PATH}"}
        result = self._side_by_side(
            dialect, "spread move points", fill.fill_spread_ours, fill.fill_spread_original, paths
        )
        return {"timings": result["timings"], "points": result["rows"], "checks": result["checks"]}

    def scale(self, dialect: str, small: dict[str, dict[str, float]]) -> dict[str, Any]:
        """Ours at ``scale_rows`` events: the default heatmap, events page and sessions list vs ``rows``."""
        rows = self.opts.scale_rows
        uri, _ = self.dbs.create(dialect, "x_ours")
        server: Server | None = None
        try:
            log(f"  {dialect}: filling {rows:,} events (ours only)")
            t_fill, t_rebuild = fill.fill_ours(uri, rows)
            log(f"  {dialect}: filled in {t_fill:.1f} s + {t_rebuild:.1f} s aggregates")
            server = Server(Config("ours", 1, "sync"), dialect, uri, "", self.workdir)
            paths = {label: path for label, path in _query_paths().items() if label in SCALED}
            timings, _ = self._time_queries(dialect, {"ours": server}, paths)
            return {
                "rows": rows,
                "small_rows": self.opts.rows,
                "timings": {label: {"big": t["ours"], "small": small[label]["ours"]} for label, t in timings.items()},
                "rebuild_s": t_rebuild,
            }
        finally:
            if server is not None:
                server.stop()
            self.dbs.drop_all()

    def mongo_queries(self) -> dict[str, Any]:
        rows = min(self.opts.rows, self.opts.mongo_rows)
        uri, _ = self.dbs.create("mongo", "q_ours")
        log(f"  mongo: filling {rows:,} events (SecantusDB)")
        took = fill.fill_ours_mongo(uri, rows)
        log(f"  mongo: filled in {took:.1f} s")
        server = Server(Config("ours", 1, "sync"), "mongo", uri, "", self.workdir)
        try:
            server.reset_peak()
            timings: dict[str, dict[str, float]] = {}
            for label, path in _query_paths().items():
                samples, _ = _time_get(server.base + path, self.opts.query_runs)
                timings[label] = {"ours": statistics.median(samples)}
                log(f"  mongo      {label:28} ours     median {timings[label]['ours']:9.1f} ms  runs {samples}")
            return {"timings": timings, "rss": {"ours": server.peak_rss()}, "rows": rows}
        finally:
            server.stop()

    def amplification(self, dialect: str) -> dict[str, Any]:
        """Stored bytes per accepted body byte of one move of 2,000 points with an 8 KB meta."""
        uri, _ = self.dbs.create(dialect, "amp")
        try:
            ratio, body, stored = amplification.measure(uri)
        finally:
            self.dbs.drop_all()
        log(f"  {dialect}: amplification batch of {body:,} bytes stored {stored:,} bytes ({ratio:.2f}x)")
        return {"ratio": ratio, "body": body, "stored": stored}

    def run(self) -> None:
        for dialect in self.opts.dialects:
            log(f"== {dialect}")
            result: dict[str, Any] = {}
            if dialect == "mongo":
                try:
                    best = Config("ours", 2, "gthread", 4) if self.opts.search else OURS_DEFAULT_BEST
                    result["best"] = self.ingest_pair(dialect, best, None)
                    result["single"] = self.ingest_pair(dialect, OURS_DEFAULT_SINGLE, None)
                    result["queries"] = self.queries(dialect)
                    result["amplification"] = self.amplification(dialect)
                except Exception as exc:  # noqa: BLE001
                    log(f"  mongo failed: {exc!r}")
                    result["error"] = repr(exc)
                finally:
                    self.dbs.stop_mongo()
                self.results[dialect] = result
                continue
            try:
                ours_best = self.best(OURS_CANDIDATES, dialect, OURS_DEFAULT_BEST)
                orig_best = self.best(ORIGINAL_CANDIDATES, dialect, ORIGINAL_DEFAULT_BEST)
                log(f"  best: ours {ours_best.label}; original {orig_best.label}")
                result["best"] = self.ingest_pair(dialect, ours_best, orig_best)
                ours_single = self.best(OURS_SINGLE_CANDIDATES, dialect, OURS_DEFAULT_SINGLE)
                result["single"] = self.ingest_pair(dialect, ours_single, Config("original", 0))
                result["queries"] = self.queries(dialect)
                result["spread"] = self.spread(dialect)
                if self.opts.scale_rows:
                    result["scale"] = self.scale(dialect, result["queries"]["timings"])
                result["amplification"] = self.amplification(dialect)
            except Exception as exc:  # noqa: BLE001 - one database failing must not lose the others
                log(f"  {dialect} failed: {exc!r}")
                result["error"] = repr(exc)
            self.results[dialect] = result
        shutil.rmtree(self.workdir, ignore_errors=True)


SCALED = ("heatmap (default: clicks)", "events page (path, offset 5,000)", "sessions list (limit 50)")


def _query_paths() -> dict[str, str]:
    p = fill.PROJECT_ID
    return {
        "heatmap (type=all)": f"/api/projects/{p}/heatmap?path={fill.PATH}&type=all",
        "heatmap (default: clicks)": f"/api/projects/{p}/heatmap?path={fill.PATH}",
        "events page (limit 200)": f"/api/projects/{p}/events?path={fill.PATH}&limit=200",
        "events page (path, offset 5,000)": f"/api/projects/{p}/events?path={fill.PATH}&limit=200&offset=5000",
        "sessions list (limit 50)": f"/api/projects/{p}/sessions?limit=50",
    }


def _time_get(url: str, runs: int) -> tuple[list[float], dict[str, Any]]:
    """Milliseconds of ``runs`` GETs (after one warm-up, skipped when a single call exceeds 2 s)."""
    samples: list[float] = []
    body: dict[str, Any] = {}
    first = True
    while len(samples) < runs:
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=600) as response:
            raw = response.read()
            status = response.status
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            raise RuntimeError(f"{url} answered {status}")
        body = json.loads(raw)
        if first and elapsed < 2000:
            first = False
            continue
        first = False
        samples.append(round(elapsed, 1))
    return samples, body


def _compare(bodies: dict[str, dict[str, Any]], paths: dict[str, str]) -> dict[str, str]:
    """Same data in both schemas, so both servers must give the same answers."""
    checks = {}
    for label in paths:
        ours, orig = bodies[f"{label}/ours"], bodies[f"{label}/original"]
        if label.startswith("heatmap"):
            # The cells differ on purpose (SPEC 4: square cells, one screen width per map); the rows
            # counted must not, and every row ours counts is plotted or reported as ignored.
            m, n = ours["meta"], orig["meta"]
            plotted = sum(p["value"] for p in ours["points"])
            same = m["total"] == n["total"] and plotted + m["ignored"] == m["total"]
            checks[label] = f"same totals ({m['total']:,} rows; ours plots {plotted:,})" if same else "DIFFERENT"
        elif label.startswith("events"):
            a = [(e["eventId"], e["ts"]) for e in ours["events"]]
            b = [(e["id"], e["ts"]) for e in orig["events"]]
            checks[label] = f"same {len(a)} events" if a == b else "DIFFERENT"
        else:
            keys = ("sessionId", "startedAt", "eventCount")
            a = [tuple(s[k] for k in keys) for s in ours["sessions"]]
            b = [tuple(s[k] for k in keys) for s in orig["sessions"]]
            checks[label] = f"same {len(a)} sessions and event counts" if a == b else "DIFFERENT"
    return checks


# -- report --------------------------------------------------------------------------------------


def _mb(value: int) -> str:
    return f"{value / 1024 / 1024:,.0f} MB"


def _ratio(ours: float, orig: float) -> str:
    return f"{ours / orig:.2f}" if orig else "n/a"


def report(bench: Bench, info: dict[str, str], started: float) -> str:
    o = bench.opts
    lines = [
        "# flask-heat-collector vs the Express original",
        "",
        f"Run {time.strftime('%Y-%m-%d %H:%M %Z')} with `./bench/run{' --quick' if o.quick else ''}`, "
        f"{(time.time() - started) / 60:.1f} min. Ratio = ours / original "
        "(events/s: higher is better for ours; latency, query time, RSS: lower is better).",
        "",
        "| database | measure | ours | original | ours/original |",
        "|---|---|---:|---:|---:|",
    ]
    for dialect, r in bench.results.items():
        if "error" in r:
            lines.append(f"| {dialect} | failed: {r['error'][:120]} | | | |")
            continue
        if "original" not in r["best"]:
            lines += _ours_only(dialect, r, o)
            continue
        for mode, title in (("best", "best config"), ("single", "1 worker vs 1 process")):
            ours, orig = r[mode]["ours"], r[mode]["original"]
            lines += [
                f"| {dialect} | ingest events/s, {title} ({ours['config']} / {orig['config']}) | "
                f"{ours['events_per_s']:,.0f} | {orig['events_per_s']:,.0f} | "
                f"**{_ratio(ours['events_per_s'], orig['events_per_s'])}** |",
                f"| {dialect} | ingest p50 / p99 latency ms, {title} | {ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} | "
                f"{orig['p50_ms']:.1f} / {orig['p99_ms']:.1f} | {_ratio(ours['p50_ms'], orig['p50_ms'])} / "
                f"{_ratio(ours['p99_ms'], orig['p99_ms'])} |",
                f"| {dialect} | ingest non-2xx (socket errors), {title} | {ours['non2xx']} ({ours['socket_errors']}) | "
                f"{orig['non2xx']} ({orig['socket_errors']}) | |",
                f"| {dialect} | peak RSS during ingest, {title} | {_mb(ours['peak_rss'])} | {_mb(orig['peak_rss'])} | "
                f"{_ratio(ours['peak_rss'], orig['peak_rss'])} |",
            ]
        q = r["queries"]
        for label, t in q["timings"].items():
            lines.append(
                f"| {dialect} | {label} ms, {o.rows:,} events | {t['ours']:,.1f} | {t['original']:,.1f} | "
                f"**{_ratio(t['ours'], t['original'])}** ({t['original'] / t['ours']:,.0f}x faster) |"
            )
        lines.append(
            f"| {dialect} | peak RSS during the queries | {_mb(q['rss']['ours'])} | {_mb(q['rss']['original'])} | "
            f"**{_ratio(q['rss']['ours'], q['rss']['original'])}** |"
        )
        lines.append(f"| {dialect} | aggregates built after the bulk fill, s | {q['rebuild_s']:.1f} | | |")
        lines += _extra_rows(dialect, r)
    lines += ["", "## Targets", "", *targets(bench), "", "## Answers compared", ""]
    for dialect, r in bench.results.items():
        checks = {**r.get("queries", {}).get("checks", {}), **r.get("spread", {}).get("checks", {})}
        if checks:
            lines.append(f"- {dialect}: " + "; ".join(f"{k}: {v}" for k, v in checks.items()))
    if bench.search_log:
        lines += ["", "## Configuration search (events/s, errors)", ""]
        for dialect, entries in bench.search_log.items():
            lines.append(f"- {dialect}: " + "; ".join(f"{label}: {ev:,.0f} ({err})" for label, ev, err in entries))
    lines += [
        "",
        "## Setup",
        "",
        f"- Load: wrk 1 thread, {o.connections} connections, {o.rounds} alternating round(s) of {o.seconds:.0f} s per "
        f"server after a {o.warmup:.0f} s warm-up, on fresh databases; bench/ingest.lua sends SDK-shaped batches of 20 "
        "events (2 pageviews, 12 clicks, 4 moves of 5 points, 2 scrolls = 36 rows), unique event ids, ten batches "
        "per session sent one after another (never two batches of one session at once). events/s = batches "
        "answered 2xx per second x 20; p50 = median of the rounds, p99 = worst round.",
        "- Both servers log at `warn`; rate limit set out of reach; ours with HEAT_QUERY_AUTH=none.",
        f"- Queries: {o.rows:,} events of one project and path bulk-inserted with SQL into each schema "
        "(bench/fill.py), "
        f"then median of {o.query_runs} runs (after one warm-up call when a call takes under 2 s). The original's "
        "schema is what its own autoMigrate creates: tables without any secondary index.",
        f"- Spread: {o.rows:,} move points over 1280 x 3000 on one path (bench/fill.py: moves of 10 points in ours, "
        "a row per point in the original's); the default heatmap (no clicks, so every type).",
        f"- Scaling: ours alone filled with {o.scale_rows:,} events of the same shape, the same queries timed.",
        "- Amplification: one move of 2,000 points with an 8 KB meta posted to an empty database (after a small "
        "warm-up batch); stored bytes = the database's physical size after minus before (tests/storage_size.py).",
        "- Ours builds its heatmap aggregates after a bulk fill (`flask heat rebuild-aggregates`); ingest writes "
        "them itself.",
        "- Peak RSS: VmHWM summed over the server's processes (gunicorn master + workers, node primary + workers), "
        "reset after warm-up. The queries are served by `gunicorn -w 1 -k sync` (master + one worker) and by one "
        "node process.",
        "- On MariaDB the original's autoMigrate fails (its CREATE TABLE names a column `key` unquoted, a reserved "
        "word), so bench/original-server.mjs creates the same tables with `key` quoted.",
        "",
        "## Versions",
        "",
    ]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    return "\n".join(lines) + "\n"


def _extra_rows(dialect: str, r: dict[str, Any]) -> list[str]:
    """Spread points, the scaling check and the amplification batch."""
    lines = []
    if "spread" in r:
        sp = r["spread"]
        for label, t in sp["timings"].items():
            lines.append(
                f"| {dialect} | {label} ms, {sp['points']:,} points over 1280x3000 | {t['ours']:,.1f} | "
                f"{t['original']:,.1f} | **{_ratio(t['ours'], t['original'])}** ({t['original'] / t['ours']:,.0f}x "
                "faster) |"
            )
    if "scale" in r:
        sc = r["scale"]
        for label, t in sc["timings"].items():
            lines.append(
                f"| {dialect} | {label} ms, ours at {sc['rows']:,} / at {sc['small_rows']:,} events | "
                f"{t['big']:,.1f} | "
                f"{t['small']:,.1f} | **{_ratio(t['big'], t['small'])}** (target <= 2) |"
            )
    if "amplification" in r:
        a = r["amplification"]
        lines.append(
            f"| {dialect} | stored bytes of a {a['body']:,}-byte move of 2,000 points + 8 KB meta | "
            f"{a['stored']:,} | | **{a['ratio']:.2f}x** the body (target <= 3) |"
        )
    return lines


def _ours_only(dialect: str, r: dict[str, Any], o: Options) -> list[str]:
    """Rows for a database the original is not run on (MongoDB: SecantusDB)."""
    name = "mongo (SecantusDB, not real MongoDB)" if dialect == "mongo" else dialect
    lines = []
    for mode, title in (("best", "best config"), ("single", "1 worker")):
        ours = r[mode]["ours"]
        lines += [
            f"| {name} | ingest events/s, {title} ({ours['config']}) | {ours['events_per_s']:,.0f} | | |",
            f"| {name} | ingest p50 / p99 latency ms, {title} | {ours['p50_ms']:.1f} / {ours['p99_ms']:.1f} | | |",
            f"| {name} | ingest non-2xx (socket errors), {title} | {ours['non2xx']} ({ours['socket_errors']}) | | |",
            f"| {name} | peak RSS during ingest, {title} | {_mb(ours['peak_rss'])} | | |",
        ]
    q = r["queries"]
    for label, t in q["timings"].items():
        lines.append(f"| {name} | {label} ms, {q['rows']:,} events | {t['ours']:,.1f} | | |")
    lines.append(f"| {name} | peak RSS during the queries | {_mb(q['rss']['ours'])} | | |")
    return lines + _extra_rows(name, r)


def targets(bench: Bench) -> list[str]:
    out = []

    def check(ok: bool, text: str) -> None:
        out.append(f"- [{'x' if ok else ' '}] {text}")

    for dialect, r in bench.results.items():
        if "error" in r or "original" not in r["best"]:
            continue
        b, s = r["best"], r["single"]
        rb = b["ours"]["events_per_s"] / max(b["original"]["events_per_s"], 1e-9)
        rs = s["ours"]["events_per_s"] / max(s["original"]["events_per_s"], 1e-9)
        if dialect in ("sqlite", "postgresql"):
            check(rb >= 2, f"{dialect}: ingest best config >= 2x the original: {rb:.2f}x")
            check(rs >= 1, f"{dialect}: ingest 1 worker >= 1x one node process: {rs:.2f}x")
        errors = b["ours"]["non2xx"] + s["ours"]["non2xx"] + b["ours"]["socket_errors"] + s["ours"]["socket_errors"]
        check(errors == 0, f"{dialect}: ours answered every ingest with 2xx ({errors} errors)")
        q = r["queries"]
        for label in ("heatmap (type=all)", "heatmap (default: clicks)"):
            t = q["timings"][label]
            speed = t["original"] / t["ours"]
            check(speed >= 50, f"{dialect}: {label} over {bench.opts.rows:,} events >= 50x faster: {speed:.0f}x")
        if "spread" in r:
            for label, t in r["spread"]["timings"].items():
                speed = t["original"] / t["ours"]
                check(speed >= 50, f"{dialect}: {label} over {r['spread']['points']:,} points >= 50x: {speed:.0f}x")
        rss = q["rss"]["ours"] / max(q["rss"]["original"], 1)
        check(rss <= 0.1, f"{dialect}: peak RSS during the queries <= 1/10 of the original's: {rss:.3f}")
        for label in ("events page (path, offset 5,000)", "sessions list (limit 50)"):
            t = q["timings"][label]
            speed = t["original"] / t["ours"]
            check(speed >= 5, f"{dialect}: {label} >= 5x faster: {speed:.1f}x")
        if "scale" in r:
            for label, t in r["scale"]["timings"].items():
                grow = t["big"] / t["small"]
                check(
                    grow <= 2,
                    f"{dialect}: {label} at {r['scale']['rows']:,} <= 2x its time at {r['scale']['small_rows']:,}: "
                    f"{grow:.2f}x",
                )
        if dialect == "mysql":
            check(rb >= 1, f"{dialect}: ingest best config >= 1x the original: {rb:.2f}x")
    for dialect, r in bench.results.items():
        if "amplification" in r:
            a = r["amplification"]["ratio"]
            check(a <= 3, f"{dialect}: stored bytes of the amplification batch <= 3x the body: {a:.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs, no config search, 200k events")
    parser.add_argument("--dialects", default="sqlite,postgresql,mysql,mongo", help="comma-separated")
    parser.add_argument("--seconds", type=float, help="seconds per measured wrk round")
    parser.add_argument("--rounds", type=int, help="alternating rounds per server")
    parser.add_argument("--rows", type=int, help="events bulk-filled for the query timings")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--mongo-rows", type=int, default=5_000, help="events filled for MongoDB (SecantusDB)")
    parser.add_argument("--no-search", action="store_true", help="skip the best-configuration search")
    parser.add_argument(
        "--scale-rows", type=int, help="events filled for the scaling check of ours (default 5,000,000; 0: skip)"
    )
    parser.add_argument("--out", type=Path, help="report file (default bench/results/latest.md, quick.md)")
    args = parser.parse_args()
    quick = args.quick
    opts = Options(
        dialects=[d.strip() for d in args.dialects.split(",") if d.strip()],
        seconds=args.seconds or (5 if quick else 10),
        warmup=2 if quick else 3,
        rounds=args.rounds or (1 if quick else 3),
        connections=args.connections,
        search=not (quick or args.no_search),
        search_seconds=6,
        rows=args.rows or (200_000 if quick else 1_000_000),
        mongo_rows=args.mongo_rows,
        query_runs=3 if quick else 5,
        scale_rows=args.scale_rows if args.scale_rows is not None else (0 if quick else 5_000_000),
        quick=quick,
        out=args.out or BENCH / "results" / ("quick.md" if quick else "latest.md"),
    )
    started = time.time()
    notes = ensure_tools()
    info = versions(notes)
    bench = Bench(opts)
    try:
        bench.run()
    finally:
        bench.dbs.drop_all()
        bench.dbs.stop_mongo()
    text = report(bench, info, started)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(text)
    (opts.out.with_suffix(".json")).write_text(json.dumps(bench.results, indent=1, default=str) + "\n")
    print(text)
    log(f"written {opts.out}")


if __name__ == "__main__":
    main()

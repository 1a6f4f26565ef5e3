"""Throw-away databases, and the two servers: ours under gunicorn, the original under node."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

from tests import processes

from . import NODE_DIR, ROOT

if TYPE_CHECKING:
    from tests.mongo_server import MongoServer

PG_ADMIN = os.environ.get("BENCH_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
MYSQL_ADMIN = os.environ.get("BENCH_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/mysql")


def admin_uri(dialect: str) -> str:
    """The admin URI that creates and drops the databases of ``dialect`` (postgresql or mysql)."""
    return PG_ADMIN if dialect == "postgresql" else MYSQL_ADMIN


def server_version(admin: str) -> str:
    """``SELECT version()`` of the server at ``admin``, without its build platform."""
    engine = sa.create_engine(admin)
    try:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT version()").scalar()).split(" on ")[0]
    finally:
        engine.dispose()


class Databases:
    """Throw-away databases named heat_bench_*, dropped when done."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.created: list[tuple[str, str]] = []
        self.mongo: MongoServer | None = None

    def create(self, dialect: str, label: str) -> tuple[str, str]:
        """(our database URI, the original's connection string) of a new empty database."""
        name = f"heat_bench_{label}_{uuid.uuid4().hex[:6]}"
        if dialect == "mongo":
            uri = f"{self._mongo_uri()}/{name}"
            return uri, uri
        if dialect == "sqlite":
            path = self.workdir / f"{name}.db"
            return f"sqlite:///{path}", str(path)
        admin = admin_uri(dialect)
        engine = sa.create_engine(admin, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        engine.dispose()
        self.created.append((dialect, name))
        url = sa.make_url(admin).set(database=name)
        ours = url.render_as_string(hide_password=False)
        native = url.set(drivername="postgres" if dialect == "postgresql" else "mysql")
        return ours, native.render_as_string(hide_password=False)

    def _mongo_uri(self) -> str:
        """SecantusDB (a MongoDB-wire-compatible server in Python, not real MongoDB), started once."""
        if self.mongo is None:
            from tests.mongo_server import MongoServer

            store = self.workdir / "secantus"
            store.mkdir(exist_ok=True)
            self.mongo = MongoServer(storage_path=str(store))
            if self.mongo.error:
                raise RuntimeError(self.mongo.error)
        return self.mongo.uri

    def stop_mongo(self) -> None:
        if self.mongo is not None:
            self.mongo.stop()
            self.mongo = None

    def drop_all(self) -> None:
        for dialect, name in self.created:
            engine = sa.create_engine(admin_uri(dialect), isolation_level="AUTOCOMMIT")
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


def ours_env(uri: str) -> dict[str, str]:
    """The ``HEAT_*`` settings ours runs with (also for ``flask heat ...`` on the same database)."""
    return {
        "PYTHONPATH": str(ROOT),
        "HEAT_DATABASE_URI": uri,
        "HEAT_RATE_LIMIT": "1000000000 per 10 seconds",
        "HEAT_QUERY_AUTH": "none",
        "HEAT_IP_HASH_SECRET": "bench-secret",
        "HEAT_LOG_LEVEL": "warn",
    }


def compact(uri: str) -> str:
    """``flask heat compact`` on ``uri`` with the settings ours runs with (its output)."""
    env = {**os.environ, **ours_env(uri)}
    command = [sys.executable, "-m", "flask", "--app", "flask_heat_collector.wsgi:create_app()", "heat", "compact"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode:
        raise RuntimeError(f"flask heat compact exited {done.returncode}: {done.stderr[-800:]}")
    return done.stdout.strip()


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
        self.port = processes.free_port()
        self.peak: dict[int, int] = {}
        self.log_path = logdir / f"{config.server}-{dialect}-{self.port}.log"
        env = dict(os.environ)
        if config.server == "ours":
            env.update(ours_env(uri))
            options = ["-w", str(config.workers), "-k", config.worker_class]
            if config.worker_class == "gthread":
                options += ["--threads", str(config.threads)]
            options += ["-b", f"127.0.0.1:{self.port}", "--backlog", "2048", "--timeout", "300"]
            options += ["--graceful-timeout", "5"]
            self.proc = processes.spawn_gunicorn(options, env, self.log_path, new_session=True)
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
            command = ["node", str(NODE_DIR / "original-server.mjs")]
            self.proc = processes.spawn(command, env, self.log_path, new_session=True)
        self._stop = threading.Event()
        try:
            processes.wait_ready(self.proc, self._answers, self.log_path, f"{config.label} did not start")
        except BaseException:
            self.stop()
            raise
        self._sampler = threading.Thread(target=self._sample_loop, daemon=True)
        self._sampler.start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _answers(self) -> bool:
        return processes.answers(self.base + "/api/metrics")

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
        processes.stop(self.proc, group=True)

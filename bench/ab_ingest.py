"""Ingest A/B of two source trees of this package through HTTP under wrk, side by side in one run.

``python -m bench.ab_ingest --before /path/to/old/tree --dialect sqlite`` serves each tree in turn
with ``gunicorn -w N`` on a fresh database of its own, drives both with the same wrk load
(bench/ingest.lua: 20-event SDK batches) in alternating rounds, and prints the median events/s, the
median p99 and the ratio (after / before). The trees share this virtual environment's packages.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests import processes

from . import ROOT, log
from .load import events_per_s, wrk
from .servers import Databases


class TreeServer:
    """Ours from one source tree under gunicorn (the tree's code, not the installed one)."""

    def __init__(self, tree: Path, uri: str, workers: int, log_path: Path) -> None:
        self.port = processes.free_port()
        env = dict(os.environ)
        env.update(
            PYTHONPATH=str(tree),
            HEAT_DATABASE_URI=uri,
            HEAT_RATE_LIMIT="1000000000 per 10 seconds",
            HEAT_QUERY_AUTH="none",
            HEAT_IP_HASH_SECRET="bench-secret",
            HEAT_LOG_LEVEL="warn",
        )
        command = [sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{self.port}"]
        command += ["--backlog", "2048", "--timeout", "300", "flask_heat_collector.wsgi:create_app()"]
        self.log = open(log_path, "wb")  # closed in stop()
        self.proc = subprocess.Popen(command, env=env, cwd=tree, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while not processes.answers(self.base + "/api/metrics"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{tree} did not start: {log_path}")
            time.sleep(0.2)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the other source tree (e.g. a git worktree)")
    parser.add_argument("--after", type=Path, default=ROOT)
    parser.add_argument("--dialect", default="sqlite", choices=["sqlite", "postgresql", "mysql", "mongo"])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--connections", type=int, default=8)
    opts = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="heat-bench-ab-"))
    databases = Databases(work)
    results: dict[str, list[dict[str, Any]]] = {"before": [], "after": []}
    servers: dict[str, TreeServer] = {}
    try:
        for label, tree in (("before", opts.before), ("after", opts.after)):
            uri, _ = databases.create(opts.dialect, label)
            servers[label] = TreeServer(tree.resolve(), uri, opts.workers, work / f"{label}.log")
            wrk(servers[label], 2, opts.connections, f"ab-{label}")  # warm-up: project, caches
        for round_ in range(opts.rounds):
            for label in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                out = wrk(servers[label], opts.seconds, opts.connections, f"ab-{label}")
                results[label].append(out)
                rate = f"{events_per_s(out):,.0f} events/s, {out['non2xx']} non-2xx"
                log(f"{opts.dialect} round {round_ + 1} {label}: {rate}")
    finally:
        for server in servers.values():
            server.stop()
        databases.drop_all()
    summary = {
        label: (
            statistics.median(events_per_s(o) for o in runs),
            statistics.median(o["p99_us"] / 1000 for o in runs),
            sum(o["non2xx"] for o in runs),
        )
        for label, runs in results.items()
    }
    (b_eps, b_p99, b_bad), (a_eps, a_p99, a_bad) = summary["before"], summary["after"]
    print(f"| {opts.dialect}, gunicorn -w {opts.workers} | before | after | after / before |")
    print("|---|---|---|---|")
    print(f"| events/s (median of {opts.rounds}) | {b_eps:,.0f} | {a_eps:,.0f} | {a_eps / b_eps:.2f} |")
    print(f"| p99 ms (median) | {b_p99:.1f} | {a_p99:.1f} | {a_p99 / b_p99:.2f} |")
    print(f"| non-2xx | {b_bad} | {a_bad} | |")


if __name__ == "__main__":
    main()

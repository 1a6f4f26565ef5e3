"""In-process MongoDB ingest A/B of two source trees: the cost of a batch's outbox (mongo_outbox).

``python -m bench.mongo_outbox --before /path/to/old/tree [--rounds 6] [--batches 60]`` starts a
SecantusDB server per round (``HEAT_TEST_MONGO=mongodb://host:port`` uses a real server instead),
posts the same 20-event batches through Flask's test client with each tree in turn (alternating
which goes first, compaction off) and prints, per tree, the median over rounds of the median time
per batch and the database commands per batch (counted with PyMongo's command monitoring).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.mongo_server import MongoServer

from . import ROOT

CHILD = r"""
import statistics, sys, time, uuid
from collections import Counter
from flask import Flask
from pymongo import monitoring
from flask_heat_collector import HeatCollector

seen = Counter()
counting = [False]


class Count(monitoring.CommandListener):
    def started(self, event):
        if counting[0]:
            seen[event.command_name] += 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass


monitoring.register(Count())
uri, n = sys.argv[1], int(sys.argv[2])
app = Flask("bench")
HeatCollector(app, database_uri=f"{uri}/bench_{uuid.uuid4().hex}", query_api_keys=["q"], ip_hash_secret="s",
              aggregate_compact_seconds=0, aggregate_compact_batches=0)
client = app.test_client()
T = 1_790_035_200_000


def body(i):
    sid = f"s{i % 50}"
    events = []
    for k in range(20):
        common = {"eventId": str(uuid.uuid4()), "sessionId": sid, "ts": T + i * 1000 + k * 10, "path": f"/p{k % 4}",
                  "viewport": {"w": 1280, "h": 800, "dpr": 1}, "device": {"ua": "x", "platform": "L", "language": "en"}}
        if k % 10 == 0:
            points = [{"x": j, "y": j, "tsOffset": j * 30} for j in range(10)]
            events.append({**common, "type": "move", "points": points})
        elif k % 5 == 0:
            events.append({**common, "type": "scroll", "scrollY": 100, "scrollDepthPct": 40})
        else:
            events.append({**common, "type": "click", "x": 10 + k, "y": 20, "selector": "#a", "button": 0})
    return {"sdk": {"name": "@m-software-engineering/heat-sdk", "version": "0.2.6"},
            "session": {"id": sid, "startedAt": T, "lastSeenAt": T + i * 1000}, "events": events}


bodies = [body(i) for i in range(n + 20)]
for b in bodies[:20]:  # warm-up
    assert client.post("/ingest", json=b, headers={"X-Project-Key": "bench"}).status_code == 200
times = []
counting[0] = True
for b in bodies[20:]:
    start = time.perf_counter()
    assert client.post("/ingest", json=b, headers={"X-Project-Key": "bench"}).status_code == 200
    times.append(time.perf_counter() - start)
counting[0] = False
print(statistics.median(times) * 1000, sum(seen.values()) / n)
app.extensions["heat_collector"].repository.dispose()
"""


def run(tree: Path, uri: str, batches: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    # Run from elsewhere: ``python -c`` puts the working directory first on sys.path.
    with tempfile.TemporaryDirectory() as cwd:
        out = subprocess.run(
            [sys.executable, "-c", CHILD, uri, str(batches)],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            check=True,
        )
    ms, commands = out.stdout.split()
    return float(ms), float(commands)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="the source tree to compare with")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--batches", type=int, default=60)
    args = parser.parse_args()
    trees = {"before": args.before, "after": ROOT}
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    for round_ in range(args.rounds):
        server = MongoServer(external=os.environ.get("HEAT_TEST_MONGO"))
        if server.error:
            raise SystemExit(server.error)
        try:
            for name in ("before", "after") if round_ % 2 == 0 else ("after", "before"):
                results[name].append(run(trees[name], server.uri, args.batches))
                print(name, *results[name][-1], flush=True)
        finally:
            server.stop()
    for name, found in results.items():
        ms = statistics.median(m for m, _ in found)
        print(f"{name}: {ms:.1f} ms per batch (median of {len(found)} medians), {found[0][1]:.0f} commands per batch")


if __name__ == "__main__":
    main()

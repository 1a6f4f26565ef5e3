"""The events page on moves of 1,000 points (issue 21): ours at several sizes, the original at the first.

Fills move points spread over 1280 x 3000 on one path (fill.py's spread fill, in moves of
``--per`` points; the original's schema holds the same points, one row per point), then times
``events?path=…&limit=200&offset=5000`` on every server, the servers taking turns (median of
``--runs``)::

    python -m bench.big_moves --dialects sqlite,postgresql --points 1000000,5000000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from . import fill, load, log
from .servers import Config, Databases, Server
from .tools import install_original

QUERY = f"/api/projects/{fill.PROJECT_ID}/events?path={fill.PATH}&limit=200&offset=5000"


def _alternating(servers: dict[str, Server], runs: int) -> dict[str, list[float]]:
    """``runs`` timed GETs of QUERY per server, the servers taking turns (after one warm-up each)."""
    samples: dict[str, list[float]] = {name: [] for name in servers}
    for server in servers.values():
        load.time_get(server.base + QUERY, 1)
    for _ in range(runs):
        for name, server in servers.items():
            found, body = load.time_get(server.base + QUERY, 1)
            if len(body.get("events", [])) != 200:
                raise RuntimeError(f"{name} answered {len(body.get('events', []))} events")
            samples[name] += found
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.big_moves", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--points", default="1000000,5000000", help="comma-separated sizes; the original at the first")
    parser.add_argument("--per", type=int, default=1000, help="points per move")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--no-original", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.points.split(",")]
    if not args.no_original:
        install_original()
    workdir = Path(tempfile.mkdtemp(prefix="heat-bench-moves-"))
    dbs = Databases(workdir)
    lines: list[str] = []
    try:
        for dialect in [d.strip() for d in args.dialects.split(",") if d.strip()]:
            servers: dict[str, Server] = {}
            try:
                for points in sizes:
                    uri, _ = dbs.create(dialect, "m_ours")
                    filled, rebuilt = fill.fill_moves_ours(uri, points, args.per)
                    log(f"{dialect} ours {points:,} points, moves of {args.per}: filled {filled:.1f} + {rebuilt:.1f} s")
                    servers[f"ours {points:,}"] = Server(Config("ours", 1, "sync"), dialect, uri, "", workdir)
                if not args.no_original:
                    orig_uri, native = dbs.create(dialect, "m_orig")
                    original = Server(Config("original", 0), dialect, orig_uri, native, workdir)  # autoMigrate
                    servers[f"original {sizes[0]:,}"] = original
                    took = fill.fill_spread_original(orig_uri, sizes[0])
                    log(f"{dialect} original {sizes[0]:,} points: filled {took:.1f} s")
                for name, samples in _alternating(servers, args.runs).items():
                    line = (
                        f"{dialect:10} {name:20} points: median {statistics.median(samples):8.1f} ms {sorted(samples)}"
                    )
                    log(line)
                    lines.append(line)
            finally:
                for server in servers.values():
                    server.stop()
                dbs.drop_all()
    finally:
        dbs.drop_all()
    print("\n".join(lines))


if __name__ == "__main__":
    main()

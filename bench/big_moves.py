"""The events page on moves of 1,000 points (issue 21): ours at several sizes, the original at the first.

Fills move points spread over 1280 x 3000 on one path (fill.py's spread fill, in moves of
``--per`` points; the original's schema holds the same points, one row per point), then times
``events?path=…&limit=200&offset=5000`` on both servers (median of ``--runs``)::

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


def _time(server: Server, runs: int) -> tuple[float, list[float], int]:
    samples, body = load.time_get(server.base + QUERY, runs)
    return statistics.median(samples), samples, len(body.get("events", []))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.big_moves", description=__doc__)
    parser.add_argument("--dialects", default="sqlite,postgresql")
    parser.add_argument("--points", default="1000000,5000000", help="comma-separated sizes; the original at the first")
    parser.add_argument("--per", type=int, default=1000, help="points per move")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-original", action="store_true")
    args = parser.parse_args()
    sizes = [int(n) for n in args.points.split(",")]
    if not args.no_original:
        install_original()
    workdir = Path(tempfile.mkdtemp(prefix="heat-bench-moves-"))
    dbs = Databases(workdir)
    results: list[str] = []
    try:
        for dialect in [d.strip() for d in args.dialects.split(",") if d.strip()]:
            for index, points in enumerate(sizes):
                uri, _ = dbs.create(dialect, "m_ours")
                filled, rebuilt = fill.fill_moves_ours(uri, points, args.per)
                log(f"{dialect} ours {points:,} points in moves of {args.per}: filled {filled:.1f} s + {rebuilt:.1f} s")
                server = Server(Config("ours", 1, "sync"), dialect, uri, "", workdir)
                try:
                    median, samples, count = _time(server, args.runs)
                finally:
                    server.stop()
                line = f"{dialect:10} ours     {points:>9,} points: median {median:8.1f} ms {samples} ({count} rows)"
                log(line)
                results.append(line)
                if index == 0 and not args.no_original:
                    orig_uri, native = dbs.create(dialect, "m_orig")
                    original = Server(Config("original", 0), dialect, orig_uri, native, workdir)  # autoMigrate
                    try:
                        log(f"{dialect} original: filled {fill.fill_spread_original(orig_uri, points):.1f} s")
                        median, samples, count = _time(original, args.runs)
                    finally:
                        original.stop()
                    line = (
                        f"{dialect:10} original {points:>9,} points: median {median:8.1f} ms {samples} ({count} rows)"
                    )
                    log(line)
                    results.append(line)
                dbs.drop_all()
    finally:
        dbs.drop_all()
    print("\n".join(results))


if __name__ == "__main__":
    main()

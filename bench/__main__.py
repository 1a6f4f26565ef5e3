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
import time
from pathlib import Path

from . import BENCH, log
from .report import report
from .runner import Bench, Options
from .tools import check_tools, install_original, versions


def parse_options(argv: list[str] | None = None) -> Options:
    """The command line of bench/run as Options (``--quick`` changes the defaults)."""
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
    args = parser.parse_args(argv)
    quick = args.quick
    return Options(
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


def main() -> None:
    opts = parse_options()
    started = time.time()
    check_tools(opts.dialects)
    info = versions(install_original())
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

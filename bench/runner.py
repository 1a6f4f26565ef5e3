"""The steps of the benchmark for each database: configuration search, ingest, queries, the rest."""

from __future__ import annotations

import shutil
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import amplification, fill, load, log
from .servers import Config, Databases, Server


@dataclass
class Options:
    """What to run, from the command line (bench/__main__.py)."""

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
    """The run: ``results`` by database (what the report and latest.json show) and the search log."""

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
            load.wrk(server, self.opts.warmup, self.opts.connections, "bench-search")
            result = load.wrk(server, self.opts.search_seconds, self.opts.connections, "bench-search")
        finally:
            server.stop()
        self.dbs.drop_all()
        events = load.events_per_s(result)
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
        results = {name: load.LoadResult() for name in servers}
        try:
            for server in servers.values():
                load.wrk(server, self.opts.warmup, self.opts.connections, "bench-warmup")
                server.reset_peak()
            for round_no in range(self.opts.rounds):
                for name, server in servers.items():
                    out = load.wrk(server, self.opts.seconds, self.opts.connections, "bench-project")
                    results[name].add(out)
                    rate = load.events_per_s(out)
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
                "checks": load.compare(bodies, paths),
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
        return self._side_by_side(dialect, "events", fill.fill_ours, fill.fill_original, load.query_paths())

    def _time_queries(
        self, dialect: str, servers: dict[str, Server], paths: dict[str, str]
    ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, Any]]]:
        timings: dict[str, dict[str, float]] = {}
        bodies: dict[str, dict[str, Any]] = {}
        for label, path in paths.items():
            timings[label] = {}
            for name, server in servers.items():
                samples, body = load.time_get(server.base + path, self.opts.query_runs)
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
            paths = {label: path for label, path in load.query_paths().items() if label in load.SCALED}
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
            for label, path in load.query_paths().items():
                samples, _ = load.time_get(server.base + path, self.opts.query_runs)
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

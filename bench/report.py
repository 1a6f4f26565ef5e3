"""The Markdown report (bench/results/latest.md): the table, the targets, the answers compared, the set-up."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runner import Bench, Options


def _mb(value: int) -> str:
    return f"{value / 1024 / 1024:,.0f} MB"


def _ratio(ours: float, orig: float) -> str:
    return f"{ours / orig:.2f}" if orig else "n/a"


def report(bench: Bench, info: dict[str, str], started: float) -> str:
    """The report of ``bench``'s results; ``info`` is the Versions list, ``started`` the start time."""
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
        at = f"ours at {sc['rows']:,} / at {sc['small_rows']:,} events"
        for label, t in sc["timings"].items():
            lines.append(
                f"| {dialect} | {label} ms, {at} | {t['big']:,.1f} | {t['small']:,.1f} | "
                f"**{_ratio(t['big'], t['small'])}** (target <= 2) |"
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
    """The checklist of the issue's targets, ticked where met."""
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
            speed = _faster(q["timings"][label])
            check(speed >= 50, f"{dialect}: {label} over {bench.opts.rows:,} events >= 50x faster: {speed:.0f}x")
        for label, t in r.get("spread", {}).get("timings", {}).items():
            speed, points = _faster(t), r["spread"]["points"]
            check(speed >= 50, f"{dialect}: {label} over {points:,} points >= 50x: {speed:.0f}x")
        rss = q["rss"]["ours"] / max(q["rss"]["original"], 1)
        check(rss <= 0.1, f"{dialect}: peak RSS during the queries <= 1/10 of the original's: {rss:.3f}")
        for label in ("events page (path, offset 5,000)", "sessions list (limit 50)"):
            speed = _faster(q["timings"][label])
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


def _faster(timing: dict[str, float]) -> float:
    """How many times faster ours answered than the original."""
    return timing["original"] / timing["ours"]

"""The side-by-side benchmark behind ``./bench/run`` (``python -m bench``), one module per job.

- ``tools``: checks the tools and databases it needs, installs the original from npm, versions;
- ``servers``: throw-away databases, ours under gunicorn and the original under node;
- ``load``: wrk ingest load and query timing;
- ``runner``: the steps run for each database;
- ``report``: the Markdown table (bench/results/latest.md);
- ``fill``, ``amplification``, ``purge``: bulk fills, the amplification batch, ingest during a purge.
- ``big_moves``, ``spread_ingest``, ``spread_ab``, ``reports``: the issue 21 measurements (events page on
  1,000-point moves; the spread-moves heatmap right after a fill through ``/ingest``, in-process and
  against the original; the viewer reports at scale).

Process helpers (free ports, gunicorn, stopping) come from tests/processes.py, shared with the suite.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NODE_DIR = BENCH / "node"


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def run(cmd: list[str], **kwargs: Any) -> str:
    """The stripped stdout of ``cmd``; RuntimeError with its output's tail when it fails."""
    done = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd[:3])}... exited {done.returncode}: {(done.stderr or done.stdout)[-500:]}")
    return str(done.stdout).strip()

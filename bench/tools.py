"""What the benchmark needs: a check of the tools and databases, the original from npm, the versions.

Nothing is installed system-wide: a missing tool stops the run with the Debian package to install.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from . import BENCH, NODE_DIR, log, run
from .servers import MYSQL_ADMIN, PG_ADMIN, admin_uri, server_version

ORIGINAL = "@m-software-engineering/heat-collector"
ORIGINAL_VERSION = "0.3.7"
NODE_PACKAGES = [f"{ORIGINAL}@{ORIGINAL_VERSION}", "express@4", "better-sqlite3@11", "pg@8", "mysql2@3", "mongodb@6"]
# Command -> what to install when it is missing.
COMMANDS = {
    "wrk": "the Debian package wrk (apt-get install wrk)",
    "node": "Node.js 20 or later (Debian: apt-get install nodejs npm)",
    "npm": "npm (Debian: apt-get install npm)",
}
# Python module -> the distribution the project's .venv gets it from (scripts/ensure-venv).
MODULES = {"gunicorn": "gunicorn"}
MONGO_MODULES = {"secantus": "secantusdb", "pymongo": "pymongo"}
DATABASES = {
    "postgresql": ("PostgreSQL", "BENCH_POSTGRES", "postgresql"),
    "mysql": ("MariaDB", "BENCH_MYSQL", "mariadb-server"),
}


def check_tools(dialects: list[str]) -> None:
    """SystemExit naming what to install when a command, a Python module or a database is missing."""
    missing = [f"{name}: install {how}" for name, how in COMMANDS.items() if shutil.which(name) is None]
    modules = {**MODULES, **(MONGO_MODULES if "mongo" in dialects else {})}
    missing += [
        f"Python module {module} in {sys.executable}: scripts/ensure-venv installs it ({dist})"
        for module, dist in modules.items()
        if importlib.util.find_spec(module) is None
    ]
    for dialect in dialects:
        if dialect in DATABASES:
            name, variable, package = DATABASES[dialect]
            admin = sa.make_url(admin_uri(dialect))
            try:
                server_version(admin_uri(dialect))
            except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
                missing.append(
                    f"{name} at {admin.render_as_string()} ({variable} sets another admin URI): "
                    f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}; install and start it "
                    f"(Debian: apt-get install {package}) or leave it out with --dialects"
                )
    if missing:
        raise SystemExit("bench/run cannot start:\n" + "\n".join(f"- {line}" for line in missing))


def install_original() -> dict[str, str]:
    """The original and its drivers from npm, into bench/node (once); returns notes for the report."""
    notes: dict[str, str] = {}
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
    return notes


def versions(notes: dict[str, str]) -> dict[str, str]:
    """The machine and every component's version, for the report's Versions list."""

    def node_pkg(name: str) -> str:
        return str(json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"])

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
            result[name] = server_version(admin)
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

"""``scripts/ensure-venv``: what ./scripts/demo and ./scripts/test install into the shared ``.venv``.

Run on a copy of the script with a stand-in ``.venv/bin/python`` that records its arguments, so no
package is installed and no network is needed.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORDER = """#!/usr/bin/env bash
[ "$1" = -c ] && exit 0
echo "PYTHONWARNINGS=${PYTHONWARNINGS:-} $*" >> "$(dirname "$0")/../calls.log"
"""


def checkout(tmp_path: Path) -> Path:
    """The script and pyproject.toml, with a .venv whose python records each pip call."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "ensure-venv", tmp_path / "scripts")
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    python = tmp_path / ".venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(RECORDER)
    python.chmod(0o755)
    return tmp_path


def ensure(repo: Path, *level: str) -> list[str]:
    """Run ``scripts/ensure-venv LEVEL``; the pip calls it made."""
    log = repo / ".venv" / "calls.log"
    log.unlink(missing_ok=True)
    result = subprocess.run(
        ["bash", str(repo / "scripts" / "ensure-venv"), *level], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return log.read_text().splitlines() if log.exists() else []


def test_the_demo_installs_the_package_alone_and_the_tests_add_the_rest(tmp_path: Path) -> None:
    repo = checkout(tmp_path)
    demo = ensure(repo, "runtime")
    assert [call.partition(" -m ")[2] for call in demo] == ["pip install -q -e ."]  # no extras, no tools
    # setuptools' "Editable installation" warning is filtered out of what the user sees.
    assert all(call.startswith("PYTHONWARNINGS=ignore:Editable installation ") for call in demo)
    assert ensure(repo, "runtime") == []  # installed, pyproject.toml unchanged

    tests = ensure(repo)  # ./scripts/test: the default level, dev
    assert any(call.endswith("-m pip install -q -e .[all] --group dev") for call in tests), tests
    assert ensure(repo, "dev") == [] and ensure(repo, "runtime") == []  # dev holds what the demo needs

    with (repo / "pyproject.toml").open("a") as pyproject:
        pyproject.write("\n# changed\n")
    assert [call.partition(" -m ")[2] for call in ensure(repo, "runtime")] == ["pip install -q -e ."]
    assert any("--group dev" in call for call in ensure(repo))


def test_the_scripts_ask_for_their_level() -> None:
    assert "scripts/ensure-venv runtime\n" in (ROOT / "scripts" / "demo").read_text()
    assert "scripts/ensure-venv dev\n" in (ROOT / "scripts" / "test").read_text()

"""Server processes on loopback ports, shared by the suite and by bench/ (which imports it from here).

Standard library only, so the benchmark can use it without the suite's dependencies; the suite never
imports bench/.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = "flask_heat_collector.wsgi:create_app()"


def free_port() -> int:
    """A loopback port nothing listens on (the OS may hand it out again once it is closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_script(script: str, *args: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``script`` (dedented) in a fresh interpreter from the repository root, which it can import.

    Output is captured as text; a non-zero exit fails with the end of stderr.
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def spawn(
    command: Sequence[str], env: Mapping[str, str], log_path: Path, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``command`` in the background from the repository root, stdout and stderr in ``log_path``.

    ``new_session`` starts it in a process group of its own, for ``stop(..., group=True)``.
    """
    with log_path.open("wb") as log:
        return subprocess.Popen(
            list(command), cwd=ROOT, env=dict(env), stdout=log, stderr=subprocess.STDOUT, start_new_session=new_session
        )


def gunicorn_available() -> bool:
    return importlib.util.find_spec("gunicorn") is not None


def spawn_gunicorn(
    options: Sequence[str], env: Mapping[str, str], log_path: Path, app: str = APP, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """``gunicorn OPTIONS APP`` with this interpreter, as ``spawn`` starts it."""
    import gunicorn.config  # type: ignore[import-untyped]

    command = [sys.executable, "-m", "gunicorn", *options]
    # gunicorn 24+ opens a control socket at a fixed path; parallel servers must not share it.
    if any(setting.name == "control_socket_disable" for setting in gunicorn.config.KNOWN_SETTINGS):
        command.append("--no-control-socket")
    return spawn([*command, app], env, log_path, new_session=new_session)


def wait_listening(process: subprocess.Popen[bytes], log_path: Path, timeout: float = 60) -> str:
    """The ``http://127.0.0.1:PORT`` gunicorn logs it listens at (for ``-b 127.0.0.1:0``)."""
    url = ""

    def listening() -> bool:
        nonlocal url
        match = re.search(r"Listening at: (http://127\.0\.0\.1:\d+)", log_path.read_text(errors="replace"))
        url = match.group(1) if match else ""
        return bool(url)

    wait_ready(process, listening, log_path, "gunicorn did not start", timeout)
    return url


def answers(url: str, headers: Mapping[str, str] | None = None) -> bool:
    """Whether a GET of ``url`` answers 200 now."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


def wait_ready(
    process: subprocess.Popen[bytes], ready: Callable[[], bool], log_path: Path, what: str, timeout: float = 60
) -> None:
    """Poll ``ready()`` until it is true; RuntimeError with the log's tail if ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{what} (exit code {process.poll()}); {log_path}:\n{tail}")
        time.sleep(0.1)


def stop(process: subprocess.Popen[bytes], *, group: bool = False, timeout: float = 20) -> None:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; ``group``: to its whole process group."""

    def send(sig: signal.Signals) -> None:
        try:
            if group:
                os.killpg(process.pid, sig)
            elif process.poll() is None:
                process.send_signal(sig)
        except ProcessLookupError:
            pass

    send(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait(10)

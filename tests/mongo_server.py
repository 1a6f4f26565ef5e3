"""A MongoDB server for the suite: SecantusDB in a subprocess, or the one ``HEAT_TEST_MONGO`` names."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from .helpers import free_port

START_TIMEOUT_SECONDS = 30.0


class MongoServer:
    """``python -m secantus`` on a free loopback port (``uri`` is set when it answers a ping).

    ``external`` uses a running server instead (e.g. a real ``mongod`` in CI).
    ``error`` says why the server is unusable.
    """

    def __init__(
        self, *args: str, storage_path: str = ":memory:", external: str | None = None, port: int | None = None
    ) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.error: str | None = None
        self.client: MongoClient[dict[str, Any]] | None = None
        self._log = tempfile.TemporaryFile()
        if external:
            self.uri = external.rstrip("/")
        else:
            port = port or free_port()
            self.uri = f"mongodb://127.0.0.1:{port}"
            command = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port)]
            try:
                self.process = subprocess.Popen(
                    [*command, "--storage-path", storage_path, *args],
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                self.error = f"mongo: cannot start SecantusDB: {exc}"
                return
        self.error = self._wait()

    def _wait(self) -> str | None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while True:
            if self.process is not None and self.process.poll() is not None:
                return f"mongo: SecantusDB exited with {self.process.returncode}: {self.output()[-500:]}"
            client: MongoClient[dict[str, Any]] = MongoClient(self.uri, serverSelectionTimeoutMS=500)
            try:
                client.admin.command("ping")
            except PyMongoError as exc:
                client.close()
                if time.monotonic() > deadline:
                    return f"mongo: no answer from {self.uri}: {type(exc).__name__}"
                time.sleep(0.1)
            else:
                self.client = client
                return None

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")

    def drop(self, database: str) -> None:
        if self.client is not None:
            self.client.drop_database(database)

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

"""A real `mlflow server` on 127.0.0.1 for tests, as a context manager.

    with running_mlflow_server(tmp_path) as url:   # ~6-8 s to start, ~0.4 GiB
        StudyTracker(url, "exp")...

Job execution is switched off: the server would otherwise start a job runner, which doubles
the start time and quadruples the memory for nothing a study uses.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

START_TIMEOUT_S = 60.0
# `--app-name basic-auth`: the server creates its admin user with this password
ADMIN_USER, ADMIN_PASSWORD = "admin", "s3cret-Pw-4417"
BASIC_AUTH = {
    "app_name": "basic-auth",
    "env": {
        "MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-session-key-for-tests",
    },
}


# Ports below the kernel's ephemeral range (32768 up) and above Ray's worker ports (10002-19999):
# no process binds one unasked, so a server stopped for an outage gets its port back although
# Ray opens ports meanwhile. Start at a per-process offset: test processes pick apart.
STATIC_PORTS = range(20000, 32000)
_GIVEN: set[int] = set()  # ports this process handed out: several asked at once all differ


def free_port() -> int:
    """A loopback port free now, from STATIC_PORTS, never one this process gave before."""
    span = len(STATIC_PORTS)
    start = (os.getpid() * 7919 + int(time.monotonic() * 1000)) % span
    for i in range(span):
        port = STATIC_PORTS[(start + i) % span]
        if port in _GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in {STATIC_PORTS}")


class MlflowServer:
    """A server that can be stopped and started again on the same port and store (an outage)."""

    def __init__(
        self,
        tmp_path: Path,
        backend_store_uri: str | None = None,
        app_name: str | None = None,
        env: dict[str, str] | None = None,
    ):
        self.app_name, self.extra_env = app_name, dict(env or {})  # e.g. "basic-auth"
        self.root = Path(tmp_path) / "mlflow-server"
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.backend = backend_store_uri or f"sqlite:///{self.root.resolve()}/mlflow.db"
        self.proc: subprocess.Popen | None = None

    def start(self) -> str:
        env = {
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **self.extra_env,
        }
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--backend-store-uri",
            self.backend,
            "--default-artifact-root",
            str(self.root.resolve() / "art"),
            "--workers",
            "1",
            *(["--app-name", self.app_name] if self.app_name else []),
        ]
        log_path = self.root / "server.log"
        with open(log_path, "ab") as log:
            # A session of its own, so the uvicorn worker it forks dies with it.
            self.proc = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                cwd=self.root,  # where basic-auth keeps its user database (basic_auth.db)
            )
        try:
            _wait_healthy(self.url, self.proc, log_path)
            if self.app_name == "basic-auth":
                self._cheap_admin_hash()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _cheap_admin_hash(self) -> None:
        """The admin's password, the same, stored under a one-round PBKDF2 hash. The server
        checks the password of every request it serves: with werkzeug's default (scrypt,
        ~0.1 s a check) a smoke study's requests cost the server ~25 s of CPU, against ~1 s
        without basic auth. Wrong or missing credentials are still turned away."""
        from werkzeug.security import generate_password_hash

        cheap = generate_password_hash(ADMIN_PASSWORD, method="pbkdf2:sha256:1")
        with contextlib.closing(sqlite3.connect(self.root / "basic_auth.db")) as db, db:
            changed = db.execute(
                "UPDATE users SET password_hash = ? WHERE username = ?", (cheap, ADMIN_USER)
            ).rowcount
        assert changed == 1, "basic-auth server: no admin user in basic_auth.db"

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None


@contextlib.contextmanager
def running_mlflow_server(
    tmp_path: Path, backend_store_uri: str | None = None, **kw
) -> Iterator[str]:
    """Start a server storing into `tmp_path` (or `backend_store_uri`, e.g. PostgreSQL), yield
    its URL, and stop its whole process group. `**kw`: MlflowServer's (e.g. **BASIC_AUTH)."""
    server = MlflowServer(tmp_path, backend_store_uri, **kw)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _wait_healthy(url: str, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n{_tail(log_path)}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1.0):
                return
        except OSError:
            time.sleep(0.25)
    raise RuntimeError(
        f"mlflow server at {url} not healthy after {START_TIMEOUT_S:g} s:\n{_tail(log_path)}"
    )


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

"""The study folder's lock: one driver per study folder."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from ..errors import StudyError


class DriverLock:
    """One driver per study folder: a second `vaestudy run` on a live study is refused; a
    lock left by a killed driver (its pid is gone) is taken over."""

    def __init__(self, path: Path):
        self.path = path

    def acquire(self) -> None:
        if self.path.exists():
            try:
                held = json.loads(self.path.read_text())
            except (OSError, ValueError):
                held = {}
            if (
                held.get("host") == socket.gethostname()
                and _alive(held.get("pid", -1))
                and held.get("pid") != os.getpid()
            ):
                raise StudyError(
                    f"study folder {self.path.parent} is in use by a running driver "
                    f"(pid {held['pid']}); wait for it to finish or stop it first"
                )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
        )

    def release(self) -> None:
        try:
            if json.loads(self.path.read_text()).get("pid") == os.getpid():
                self.path.unlink()
        except (OSError, ValueError):
            pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (OSError, TypeError):
        return False
    try:  # a zombie (killed, not yet reaped) is not a live driver
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return True

"""The driver's terminal is vaestudy's own: every other logger's lines (Ray, MLflow, Optuna,
SQLAlchemy, Starlette, ...) and Python warnings go to the study's log file instead.

`capture()` takes them (call it again after a library set up its loggers: `import mlflow`,
`ray.init`); until `to_file(path)` names the file they wait in memory, so nothing is
written before the study folder may exist ("bad input leaves nothing behind").
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import logging.handlers
import sys
from pathlib import Path

LOG_FILE = "vaestudy.log"  # in the study folder (its local cache for a remote study)
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_held = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)


def _to_terminal(handler: logging.Handler) -> bool:
    """A handler that writes to a stream that is not a file: stderr or stdout, directly or
    wrapped (MLflow's MlflowLoggingStream, Ray's PlainRayHandler); an in-memory one (a test's
    log capture) is left alone."""
    return (
        isinstance(handler, logging.StreamHandler)
        and not isinstance(handler, logging.FileHandler)
        and not isinstance(getattr(handler, "stream", None), io.StringIO)
    )


def capture() -> None:
    """Every logger that writes to the terminal writes to the study's log instead."""
    logging.captureWarnings(True)
    root = logging.getLogger()
    for handler in [h for h in root.handlers if _to_terminal(h)]:
        root.removeHandler(handler)
    if _held not in root.handlers:
        root.addHandler(_held)
    if root.level > logging.INFO:
        root.setLevel(logging.INFO)  # INFO lines of loggers without a level of their own too
    for logger in list(logging.root.manager.loggerDict.values()):
        if not isinstance(logger, logging.Logger):
            continue
        terminal = [h for h in logger.handlers if _to_terminal(h)]
        for handler in terminal:
            logger.removeHandler(handler)
        if terminal:
            logger.propagate = True


def to_file(path: Path) -> Path:
    """From now on, and what was held so far, into `path` (appended: a resume adds to it)."""
    path = Path(path).resolve()
    target = _held.target
    if not isinstance(target, logging.FileHandler) or Path(target.baseFilename) != path:
        if target is not None:
            target.close()
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter(_FORMAT))
        _held.setTarget(handler)
    _held.flushLevel = logging.NOTSET  # every line as it comes
    _held.flush()
    return path


class _LogStream(io.TextIOBase):
    """A file-like stand-in for stdout/stderr whose lines go to the study's log."""

    def __init__(self, name: str):
        super().__init__()
        self.logger, self.pending = logging.getLogger(name), ""

    def write(self, text: str) -> int:
        *lines, self.pending = (self.pending + text).split("\n")
        for line in lines:
            if line.strip():
                self.logger.info(line.rstrip())
        return len(text)

    def flush(self) -> None:
        if self.pending.strip():
            self.logger.info(self.pending.rstrip())
        self.pending = ""

    def isatty(self) -> bool:
        return False

    @property
    def encoding(self) -> str:
        return "utf-8"


_terminal: list = []  # the streams as they were before streams_to_log, for vaestudy's own lines


def _say(echo, line: str) -> None:
    log_streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _terminal[-1] if _terminal else log_streams
    try:
        echo(line)
    finally:
        sys.stdout, sys.stderr = log_streams


@contextlib.contextmanager
def streams_to_log(echo):
    """While the study runs, what third-party code prints to sys.stdout or sys.stderr (Ray's
    "(raylet) ..." lines of a lost node, say) goes to the log: the terminal stays vaestudy's.
    Yields `echo` made to write to the streams as they were, for vaestudy's own lines (a
    module-level partial: Tune pickles the callbacks that hold it)."""
    _terminal.append((sys.stdout, sys.stderr))
    log_streams = _LogStream("stdout"), _LogStream("stderr")
    sys.stdout, sys.stderr = log_streams
    try:
        yield functools.partial(_say, echo)
    finally:
        for stream in log_streams:
            stream.flush()
        sys.stdout, sys.stderr = _terminal.pop()

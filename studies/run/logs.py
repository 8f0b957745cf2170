"""The driver's terminal is vaestudy's own: every other logger's lines (Ray, MLflow, Optuna,
SQLAlchemy, Starlette, ...) and Python warnings go to the study's log file instead.

`capture()` takes them (call it again after a library set up its loggers: `import mlflow`,
`ray.init`); until `to_file(path)` names the file they wait in memory, so nothing is
written before the study folder may exist ("bad input leaves nothing behind").
"""

from __future__ import annotations

import io
import logging
import logging.handlers
from pathlib import Path

LOG_FILE = "vaestudy.log"  # in the study folder (its local cache for a remote study)
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_held = logging.handlers.MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1)


def _to_terminal(handler: logging.Handler) -> bool:
    """A handler that writes to a stream that is not a file: stderr or stdout, directly or
    wrapped (MLflow's MlflowLoggingStream, Ray's PlainRayHandler); an in-memory one (a test's
    log capture) is left alone."""
    return (isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)
            and not isinstance(getattr(handler, "stream", None), io.StringIO))


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

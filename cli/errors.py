"""One clean line and exit code 2 for every error a user can cause."""

from __future__ import annotations

import contextlib
import sys

import click

# Exception types a user's input can raise, by module. Looked up only if the module is
# already imported (an exception can't be of a type whose module was never loaded), so
# `vaestudy --help` never pays for importing torch.
EXPECTED = {
    "textvae_core.config": "ConfigError",
    "textvae_core.errors": ("DataError", "CheckpointError"),
    "studies.errors": "StudyError",
    "studies.tracking": "TrackingError",
}


class UserError(click.ClickException):
    exit_code = 2


def expected_error_types() -> tuple[type[BaseException], ...]:
    return tuple(
        getattr(sys.modules[m], name)
        for m, names in EXPECTED.items()
        if m in sys.modules
        for name in ((names,) if isinstance(names, str) else names)
    )


@contextlib.contextmanager
def user_errors():
    try:
        yield
    except click.ClickException:
        raise
    except Exception as exc:  # noqa: BLE001 - re-raised unless it is a user error
        if isinstance(exc, expected_error_types()):
            raise UserError(" ".join(str(exc).split())) from None
        raise

"""The core's user-facing errors: a corpus or a checkpoint that cannot be used."""


class DataError(RuntimeError):
    """A corpus that cannot be used; the message is one line: what is wrong and what to do."""


class CheckpointError(RuntimeError):
    """A checkpoint this version cannot load (another format); the message says what to do."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())

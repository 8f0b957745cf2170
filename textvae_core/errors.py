"""The core's user-facing error: a corpus that cannot be used."""


class DataError(RuntimeError):
    """A corpus that cannot be used; the message is one line: what is wrong and what to do."""


def one_line(text: object) -> str:
    return " ".join(str(text).split())

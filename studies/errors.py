"""Errors a user's input can cause; the CLI prints them as one line with exit code 2."""


class StudyError(ValueError):
    """A bad study name, preset, option or study folder; the message says what is allowed."""

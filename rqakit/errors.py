"""The kit's one error type for bad input: a one-line message that says what to do."""


class RqaError(Exception):
    """Bad input or a missing prerequisite. The CLI prints the message on one line and exits 2."""

"""The kit's one error type for bad input: a one-line message that says what to do."""


class RqaError(Exception):
    """Bad input or a missing prerequisite. The CLI prints the message on one line and exits 2."""


class Interrupted(RqaError):
    """Ctrl-C: the message says where the run stopped and that rerunning resumes it (exit 130)."""

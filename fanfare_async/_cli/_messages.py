"""The program's name and its one-line messages on stderr."""

import sys

PROG = "fanfare-async"


def say(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()

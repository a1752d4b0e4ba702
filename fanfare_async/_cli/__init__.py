"""The ``fanfare-async`` command: a thin layer over the public client.

Subcommands: ``get ID...`` (JSON), ``bulk [FILE|-]`` (NDJSON per id), ``mock-server``
(runs the test double) and ``demo`` (the test double in-process, fetched twice). stdout
carries only results; progress and the summary line go to stderr. rich is imported
only when a progress display is shown on a terminal.
"""

from ._main import main

__all__ = ["main"]

"""Starting a load server process and talking to it."""

from __future__ import annotations

import json
import subprocess
from types import TracebackType
from typing import Any

from ._common import PYTHON


class ServerProcess:
    """``with ServerProcess("mock", "--latency", "0.02") as srv: srv.url ...``"""

    def __init__(self, mode: str, *args: str, cpu: int | None = None) -> None:
        argv = [PYTHON, "-m", "benchmarks._server", mode, *args]
        if cpu is not None:
            argv += ["--cpu", str(cpu)]
        self._argv = argv
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.secret_key = ""
        self.start_time = 0.0

    def __enter__(self) -> ServerProcess:
        proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._proc = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            raise RuntimeError(f"server {self._argv} did not start (exit {proc.returncode})")
        hello = json.loads(line)
        self.url = hello["url"]
        self.secret_key = hello["secret_key"]
        self.start_time = float(hello["start"])
        return self

    def stats(self) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.write("stats\n")
        proc.stdin.flush()
        result: dict[str, Any] = json.loads(proc.stdout.readline())
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

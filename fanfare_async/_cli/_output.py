"""What goes to stdout: the JSON document of ``get`` and the NDJSON records of ``bulk``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, BinaryIO

import msgspec

from .._api_errors import api_error_text
from .._exceptions import APIError, FanfareError
from .._models import Audience, encode_audiences


def error_info(exc: FanfareError) -> dict[str, Any]:
    """The error's type, HTTP status (or None) and readable text, for NDJSON and stderr
    (for an APIError, the text without status and url, not the body's bare message)."""
    info: dict[str, Any] = {"type": type(exc).__name__, "status": None, "message": str(exc)}
    if isinstance(exc, APIError):
        info["status"] = exc.status_code
        info["message"] = api_error_text(exc)
        if exc.request_id:
            info["request_id"] = exc.request_id
    return info


def audiences_document(results: dict[str, list[Audience]], *, single: bool) -> bytes:
    """One group's array when ``single``, else an object {id: array}."""
    if single:
        return encode_audiences(next(iter(results.values())))
    members = [msgspec.json.encode(gid) + b":" + encode_audiences(a) for gid, a in results.items()]
    return b"{" + b",".join(members) + b"}"


def write_json(document: bytes) -> None:
    """Write a JSON document to stdout, indented when stdout is a terminal."""
    stdout = sys.stdout.buffer
    if sys.stdout.isatty():
        document = msgspec.json.format(document, indent=2)
    stdout.write(document + b"\n")
    stdout.flush()


class RecordWriter:
    """NDJSON records to a stream, each line written whole and flushed at once.

    While ``echo`` is set, lines go to it instead (a live display on the same terminal).
    """

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self.echo: Callable[[str], None] | None = None

    def ok(self, group_id: str, audiences: list[Audience]) -> None:
        """The record of a group found."""
        self._write(
            b'{"group_id":'
            + msgspec.json.encode(group_id)
            + b',"ok":true,"audiences":'
            + encode_audiences(audiences)
            + b"}"
        )

    def error(self, group_id: str, exc: FanfareError, line: int | None = None) -> None:
        """The record of a failed id, with its input line number when it was invalid."""
        record: dict[str, Any] = {"group_id": group_id}
        if line is not None:
            record["line"] = line
        record["ok"] = False
        record["error"] = error_info(exc)
        self._write(msgspec.json.encode(record))

    def _write(self, record: bytes) -> None:
        if self.echo is not None:
            self.echo(record.decode())
            return
        self._stream.write(record + b"\n")
        self._stream.flush()

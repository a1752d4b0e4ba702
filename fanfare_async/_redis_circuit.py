"""The circuit breaker of the Redis tier: a pure state machine on an injected clock.

Closed: every operation runs. A timeout or connection error opens it for a
cooldown (``cooldown`` seconds, doubled after each failed probe, at most
``max_cooldown``). Once the cooldown has passed, one operation runs as the
probe (the others are refused meanwhile); its success closes the circuit, its
failure opens it again for twice as long. Failures of operations that started
before the circuit opened do not lengthen it: one outage is one failure, however
many operations were in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class Circuit:
    __slots__ = ("_base", "_cap", "_clock", "_cooldown", "_open_until", "_probing", "closed")

    def __init__(
        self,
        cooldown: float,
        max_cooldown: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = cooldown
        self._cap = max_cooldown
        self._clock = clock
        self._cooldown = cooldown  # doubled per failed probe since the circuit last closed
        self._open_until = 0.0
        self._probing = False
        #: True while operations run freely (the hot path reads only this).
        self.closed = True

    @property
    def available(self) -> bool:
        """Closed, or open with its cooldown over and no probe running."""
        return self.closed or (not self._probing and self._clock() >= self._open_until)

    @property
    def cooldown(self) -> float:
        """How long the circuit opens for on the next failure."""
        return self._cooldown

    def try_probe(self) -> bool:
        """While open: whether this operation may run, as the one probe."""
        if self._probing or self._clock() < self._open_until:
            return False
        self._probing = True
        return True

    def failure(self, *, probe: bool) -> None:
        """An operation timed out or lost its connection."""
        if probe:
            self._probing = False
            self._cooldown = min(self._cooldown * 2, self._cap)
        elif not self.closed:
            return  # started before the circuit opened: the same outage
        self.closed = False
        self._open_until = self._clock() + self._cooldown

    def success(self, *, probe: bool) -> None:
        """An operation got its answer: the probe's closes the circuit."""
        if probe:
            self._probing = False
            self._cooldown = self._base
            self.closed = True

    def probe_aborted(self) -> None:
        """The probe was cancelled before it learned anything: the next operation probes."""
        self._probing = False

    def __repr__(self) -> str:
        if self.closed:
            return "closed"
        left = self._open_until - self._clock()
        return "probing" if self._probing else f"open ({max(left, 0.0):.2f} s left)"

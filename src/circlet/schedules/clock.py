"""The scheduler's time: real UTC time, or, for tests only, time that runs faster.

A test that must see several fire times on real server processes cannot wait hours. With
``CIRCLET_TEST_SCHEDULER_CLOCK=EPOCH:SPEED`` the schedules' clock reads ``EPOCH + (real - EPOCH) *
SPEED`` (Unix seconds): every process given the same value agrees on the time, as real clocks do,
and the scheduler's waits are ``SPEED`` times shorter. ``SPEED`` 0 stops the clock at ``EPOCH``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass
class ScheduleClock:
    epoch: float | None = None  # None: real time
    speed: float = 1.0

    @classmethod
    def parse(cls, text: str) -> ScheduleClock:
        """``""`` (real time) or ``EPOCH:SPEED``; ValueError otherwise."""
        if not text:
            return cls()
        epoch, _, speed = text.partition(":")
        clock = cls(float(epoch), float(speed or 1))
        if clock.speed < 0:
            raise ValueError("the speed of a test clock is not negative")
        return clock

    def now(self) -> datetime:
        real = time.time()
        if self.epoch is None:
            return datetime.fromtimestamp(real, UTC)
        return datetime.fromtimestamp(self.epoch + (real - self.epoch) * self.speed, UTC)

    def real_seconds(self, seconds: float) -> float:
        """How long to sleep, in real time, for ``seconds`` of this clock to pass."""
        if self.epoch is None or self.speed == 1:
            return seconds
        return seconds / self.speed if self.speed > 0 else seconds

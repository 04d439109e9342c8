"""Step output on its way to the server: batched, in order, one call at a time, with back-pressure
on a chatty step (docs/runner-protocol.md)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque

from circlet.agent.protocol.client import TaskClient
from circlet.agent.protocol.wire import ProtocolError

log = logging.getLogger("circlet.agent")

MAX_OUTPUT_CALL = 1024 * 1024
"""The protocol's limit on one output call."""


class OutputShipper:
    """Sends a task's step output in order, one call at a time, batching up to ``max_delay`` seconds
    or ``max_batch`` bytes. ``write`` waits while more than ``max_buffered`` bytes are unsent, so a
    chatty step is slowed down rather than held in memory."""

    def __init__(
        self,
        client: TaskClient,
        *,
        max_delay: float = 0.25,
        max_batch: int = 64 * 1024,
        max_buffered: int = 4 * 1024 * 1024,
    ) -> None:
        self._client = client
        self._max_delay = max_delay
        self._max_batch = max_batch
        self._max_buffered = max_buffered
        self._segments: deque[tuple[int, bytearray]] = deque()
        self._buffered = 0
        self._first_at = 0.0
        self._flushing = 0
        self._in_flight = False
        self._error: BaseException | None = None
        self._changed = asyncio.Condition()
        self._sender = asyncio.create_task(self._send_forever())

    async def write(self, index: int, data: bytes) -> None:
        if not data:
            return
        async with self._changed:
            await self._changed.wait_for(lambda: self._error is not None or self._buffered < self._max_buffered)
            self._raise_error()
            if not self._segments:
                self._first_at = asyncio.get_running_loop().time()
            if self._segments and self._segments[-1][0] == index:
                self._segments[-1][1].extend(data)
            else:
                self._segments.append((index, bytearray(data)))
            self._buffered += len(data)
            self._changed.notify_all()

    async def flush(self) -> None:
        """Return once everything written so far has been sent."""
        async with self._changed:
            self._flushing += 1
            self._changed.notify_all()
            try:
                await self._changed.wait_for(
                    lambda: self._error is not None or (not self._segments and not self._in_flight)
                )
            finally:
                self._flushing -= 1
            self._raise_error()

    async def aclose(self) -> None:
        """Send what is left, then stop."""
        try:
            await self.flush()
        finally:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _batch_ready(self) -> bool:
        return bool(self._segments) and (
            self._buffered >= self._max_batch
            or self._flushing > 0
            or asyncio.get_running_loop().time() - self._first_at >= self._max_delay
        )

    def _take_batch(self) -> tuple[int, bytes]:
        index, data = self._segments[0]
        batch = bytes(data[:MAX_OUTPUT_CALL])
        del data[:MAX_OUTPUT_CALL]
        if not data:
            self._segments.popleft()
        self._buffered -= len(batch)
        self._first_at = asyncio.get_running_loop().time()
        return index, batch

    async def _send_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            async with self._changed:
                while not self._batch_ready():
                    wait = None if not self._segments else max(0.0, self._first_at + self._max_delay - loop.time())
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), wait)
                index, batch = self._take_batch()
                self._in_flight = True
            try:
                await self._client.step_output(index, batch)
            except ProtocolError as exc:
                log.warning("output refused", extra={"step": index, "bytes": len(batch), "problem": str(exc)})
            except Exception as exc:  # TaskLost: every later write or flush raises it
                async with self._changed:
                    self._error = exc
                    self._segments.clear()
                    self._buffered = 0
                    self._in_flight = False
                    self._changed.notify_all()
                return
            async with self._changed:
                self._in_flight = False
                self._changed.notify_all()

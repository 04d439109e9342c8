"""The task queue's wake-up signal and lease rules.

The database is the queue (``engine.repository.claim_task``); this module only tells waiting
claims that something changed. On SQLite everything runs in one process, so an in-process
condition is enough; on PostgreSQL every enqueue also sends ``NOTIFY circlet_tasks`` inside its
transaction (delivered on commit), and each API process LISTENs and wakes its own waiters, so a
task enqueued by one process is claimed at once by a runner long-polling another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Iterable
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession

from circlet.db.dialect import notify

log = logging.getLogger("circlet.engine")

CHANNEL = "circlet_tasks"
HEARTBEAT_SECONDS = 2
# A waiter re-checks the database this often even without a signal, in case one was lost
# (a dropped LISTEN connection, another process on SQLite such as an admin command).
SAFETY_POLL_SECONDS = 5.0


_SIGNALS: weakref.WeakSet[TaskSignal] = weakref.WeakSet()


def close_all() -> None:
    """The server is shutting down: end every long-poll now (from a signal handler, too), so that
    waiting runners do not hold the graceful shutdown for their full wait."""
    for signal in list(_SIGNALS):
        signal.close()


class TaskSignal:
    """Per resource class, a generation counter and an event waiters sleep on."""

    def __init__(self) -> None:
        self._generation: dict[str, int] = {}
        self._events: dict[str, asyncio.Event] = {}
        self._listener: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False
        _SIGNALS.add(self)

    def close(self) -> None:
        self.closed = True
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.wake, list(self._events))

    def generation(self, resource_class: str) -> int:
        return self._generation.get(resource_class, 0)

    def wake(self, resource_classes: Iterable[str]) -> None:
        for resource_class in resource_classes:
            self._generation[resource_class] = self.generation(resource_class) + 1
            waiting = self._events.pop(resource_class, None)
            if waiting is not None:
                waiting.set()

    async def wait(self, resource_class: str, seen: int, timeout: float) -> None:
        """Return when the class's generation moves past ``seen`` or ``timeout`` passes."""
        if self.generation(resource_class) != seen or self.closed:
            return
        self._loop = asyncio.get_running_loop()
        waiting = self._events.setdefault(resource_class, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiting.wait(), min(timeout, SAFETY_POLL_SECONDS))

    async def announce(self, session: AsyncSession, resource_classes: Iterable[str]) -> None:
        """Wake the waiters of these classes once the session's transaction commits."""
        classes = sorted(set(resource_classes))
        if not classes:
            return
        for resource_class in classes:
            await notify(session, CHANNEL, resource_class)

        def after_commit(_session: Any) -> None:
            self.wake(classes)

        event.listen(session.sync_session, "after_commit", after_commit, once=True)

    async def listen(self, database_url: str) -> None:
        """PostgreSQL only: LISTEN on a connection of its own and wake local waiters."""
        import asyncpg  # type: ignore[import-untyped]

        url = database_url.replace("postgresql+asyncpg://", "postgresql://")
        while True:
            try:
                connection = await asyncpg.connect(url)
                await connection.add_listener(CHANNEL, lambda *args: self.wake([args[3]]))
                self._listener = connection
                # Anything enqueued while we were not listening is found by the waiters' next poll.
                self.wake(list(self._generation))
                while not connection.is_closed():
                    await asyncio.sleep(1.0)
            except asyncio.CancelledError:
                if self._listener is not None:
                    await self._listener.close()
                raise
            except Exception as exc:  # reconnect: the database restarted or the network blinked
                log.warning("task signal listener lost its connection", extra={"error": str(exc)})
                await asyncio.sleep(1.0)

"""Compiles of user input, in worker processes with a wall-clock timeout and a memory ceiling.

A config is a program a stranger sends: its compile is CPU-bound Python, which on the serving event
loop (or on a thread, holding the GIL) stops every other request. Each compile runs in a worker
process of a small pool. A worker that passes the timeout is killed and replaced; its address
space is capped (``RLIMIT_AS``), so a runaway compile fails with ``MemoryError`` (or dies) instead
of growing the server. Each organization may have only so many compiles in flight; the rest wait
their turn in order, so one organization's burst leaves workers for the others.

``concurrent.futures.ProcessPoolExecutor`` cannot stop one running call: killing its worker breaks
the whole executor and fails every other compile in flight. Here each worker is one process and
one pipe, killed and replaced on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from circlet.config import DEFAULT_LIMITS, CompiledConfig, ConfigInvalid, ExpansionLimits, compile_config

log = logging.getLogger("circlet.engine")

PARENT_CHECK_SECONDS = 1.0


@dataclass(frozen=True)
class CompileRequest:
    source: str
    filename: str = "config.yml"
    parameters: dict[str, Any] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    orb_dirs: list[Path] | None = None
    limits: ExpansionLimits = DEFAULT_LIMITS


@dataclass(frozen=True)
class Compiled:
    config: CompiledConfig
    rendered: str


class CompileRefused(Exception):
    """The compile did not produce a config; ``errors`` are lines ``file:line:column: path: message``."""

    def __init__(self, errors: list[str], kind: str = "config") -> None:
        super().__init__("\n".join(errors))
        self.errors = errors
        self.kind = kind


def compile_request(request: CompileRequest) -> Compiled:
    """The compile itself (what a worker runs); raises ConfigInvalid."""
    config = compile_config(
        request.source,
        filename=request.filename,
        pipeline_parameters=request.parameters,
        pipeline_values=request.values,
        orb_dirs=request.orb_dirs,
        limits=request.limits,
    )
    return Compiled(config, config.to_yaml_within(request.limits, request.filename))


# -- the worker process -------------------------------------------------------------------------


def _serve(conn: Connection, memory_bytes: int, parent_pid: int) -> None:
    """A worker's life: compile each request received, answer, until the pipe closes."""
    if memory_bytes:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        outcome = _outcome(request)
        try:
            conn.send(outcome)
        except MemoryError:
            conn.send(("memory", None))
        if outcome[0] == "memory":
            return  # a fresh process, rather than a heap that just ran out


def _outcome(request: CompileRequest) -> tuple[str, Any]:
    try:
        return ("compiled", compile_request(request))
    except ConfigInvalid as exc:
        return ("invalid", [error.format() for error in exc.errors])
    except MemoryError:
        return ("memory", None)
    except RecursionError:
        return ("invalid", ["the config is nested too deeply to compile"])


def _exit_with_parent(parent_pid: int) -> None:
    """A server killed mid-compile must not leave its workers compiling for nobody."""
    while True:
        threading.Event().wait(PARENT_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            os._exit(1)


# -- the pool, in the server ----------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Connection

    def exchange(self, request: CompileRequest, timeout: float) -> tuple[str, Any]:
        """Send one request and wait for its answer (on a thread: the pipe blocks)."""
        try:
            self.conn.send(request)
        except OSError:
            return ("gone", None)  # it died while idle: not this compile's doing
        if not self.conn.poll(timeout):
            return ("timeout", None)
        try:
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            return ("died", None)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self.process.kill()
            self.process.wait(5)
        self.conn.close()


@dataclass
class _OrgQueue:
    slots: asyncio.Semaphore
    users: int = 0


class CompilePool:
    """Worker processes started on demand, up to ``workers``; at most ``per_org`` compiles of one
    organization at a time."""

    def __init__(self, *, workers: int, timeout_seconds: float, memory_bytes: int, per_org: int) -> None:
        self.workers = workers
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self.per_org = per_org
        self._idle: list[_Worker] = []
        self._busy: set[_Worker] = set()
        self._slots: asyncio.Semaphore | None = None
        self._orgs: dict[uuid.UUID, _OrgQueue] = {}
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compile")

    async def compile(self, org_id: uuid.UUID, request: CompileRequest) -> Compiled:
        """Raises CompileRefused: the config is invalid, or the compile passed a limit."""
        queue = self._orgs.get(org_id)
        if queue is None:
            queue = self._orgs[org_id] = _OrgQueue(asyncio.Semaphore(self.per_org))
        queue.users += 1
        try:
            async with queue.slots, self._all_slots():
                return await self._run(request)
        finally:
            queue.users -= 1
            if not queue.users:
                del self._orgs[org_id]

    def _all_slots(self) -> asyncio.Semaphore:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        return self._slots

    async def _run(self, request: CompileRequest) -> Compiled:
        kind, value = await self._exchange(request)
        for _ in range(self.workers):  # every idle worker may have died (killed by an operator, say)
            if kind != "gone":
                break
            kind, value = await self._exchange(request)
        if kind == "compiled":
            assert isinstance(value, Compiled)
            return value
        if kind == "invalid":
            raise CompileRefused(value)
        if kind == "timeout":
            raise CompileRefused(
                [
                    f"compiling the config took longer than the limit of {self.timeout_seconds:g} s "
                    "(compile_timeout_seconds): it was stopped"
                ],
                "timeout",
            )
        if kind == "memory":
            raise CompileRefused(
                [
                    f"compiling the config needed more memory than the limit of {self.memory_bytes // 2**20} MB "
                    "(compile_memory_mb): it was stopped"
                ]
            )
        raise CompileRefused(["the compile stopped before it finished (out of memory, or killed)"], "other")

    async def _exchange(self, request: CompileRequest) -> tuple[str, Any]:
        """One request on an idle (or a new) worker; a worker that did not answer normally is replaced."""
        worker = self._idle.pop() if self._idle else await asyncio.to_thread(self._start_worker)
        self._busy.add(worker)
        loop = asyncio.get_running_loop()
        try:
            kind, value = await loop.run_in_executor(self._threads, worker.exchange, request, self.timeout_seconds)
        except BaseException:
            worker.kill()  # cancelled mid-compile: the worker's answer would be read by the next request
            raise
        finally:
            self._busy.discard(worker)
        if kind in ("compiled", "invalid"):
            self._idle.append(worker)
        else:
            await asyncio.to_thread(worker.kill)
        return kind, value

    async def warm(self) -> None:
        """Start the workers ahead of the first compile (in the background of a starting server)."""
        while len(self._idle) + len(self._busy) < self.workers:
            self._idle.append(await asyncio.to_thread(self._start_worker))

    def _start_worker(self) -> _Worker:
        """A fresh interpreter that imports the compiler only (not the server, nor ``__main__``)."""
        ours, theirs = socket.socketpair()
        command = [sys.executable, "-m", "circlet.engine.compiling", str(theirs.fileno()), str(self.memory_bytes)]
        command.append(str(os.getpid()))
        process = subprocess.Popen(command, pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL)
        theirs.close()
        return _Worker(process, Connection(ours.detach()))

    def close(self) -> None:
        for worker in [*self._idle, *self._busy]:
            worker.kill()
        self._idle.clear()
        self._busy.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)


if __name__ == "__main__":
    # Through the module's own name, so what the worker pickles names classes the server can find.
    from circlet.engine import compiling

    compiling._serve(Connection(int(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]))

"""The agent's side of the runner protocol (docs/runner-protocol.md): the task payload as typed
dataclasses, and a thin async HTTP client with retries on transport errors and 5xx answers."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import importlib.metadata
import logging
import os
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

log = logging.getLogger("circlet.agent")


def _user_agent() -> str:
    """``circlet-runner/VERSION``: the server lists runner instances with their version."""
    try:
        return f"circlet-runner/{importlib.metadata.version('circlet')}"
    except importlib.metadata.PackageNotFoundError:
        return "circlet-runner"


USER_AGENT = _user_agent()

API = "/api/v3/runner"
MAX_OUTPUT_CALL = 1024 * 1024
"""The protocol's limit on one output call."""
FILE_CHUNK = 1024 * 1024


class RunnerError(Exception):
    """Base class of the client's errors."""


class Unauthorized(RunnerError):
    """The runner token was refused (401/403): a configuration error, the agent stops."""


class TaskLost(RunnerError):
    """The task is no longer ours: its lease expired (409), its token stopped working, or the server
    stayed unreachable for longer than the lease. The agent abandons the task without completing it."""


class ProtocolError(RunnerError):
    """An answer the protocol does not allow (a 4xx other than the ones above)."""


class Gone(ProtocolError):
    """404: what the task asked for is not there (a cache found a moment ago may have expired since)."""


@dataclass(frozen=True)
class JobInfo:
    id: str
    number: int | None
    name: str
    parallel_index: int
    parallelism: int
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobInfo:
        return cls(
            id=str(data.get("id", "")),
            number=data.get("number"),
            name=str(data.get("name", "")),
            parallel_index=int(data.get("parallel_index") or 0),
            parallelism=int(data.get("parallelism") or 1),
            raw=data,
        )


@dataclass(frozen=True)
class Checkout:
    url: str
    revision: str | None
    branch: str | None
    tag: str | None
    ssh_private_key: str | None

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Checkout | None:
        if not data or not data.get("url"):
            return None
        return cls(
            url=str(data["url"]),
            revision=data.get("revision"),
            branch=data.get("branch"),
            tag=data.get("tag"),
            ssh_private_key=data.get("ssh_private_key"),
        )


@dataclass(frozen=True)
class ExecutorSpec:
    type: str
    image: str | None
    working_directory: str
    resource_class: str | None
    shell: str | None
    """The job-level ``shell:``, for ``run`` steps that name none."""
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> ExecutorSpec:
        data = data or {}
        return cls(
            type=str(data.get("type") or "machine"),
            image=data.get("image"),
            working_directory=str(data.get("working_directory") or "~/project"),
            resource_class=data.get("resource_class"),
            shell=data.get("shell") or None,
            raw=dict(data.get("raw") or {}),
        )


@dataclass(frozen=True)
class SshKey:
    """A project SSH key that ``add_ssh_keys`` may install."""

    fingerprint: str
    private_key: str
    aliases: tuple[str, ...] = ()
    """Other fingerprints of the same key (its ``SHA256:`` form) that a step may name it by."""
    hostnames: tuple[str, ...] = ()
    """The hosts (ssh ``Host`` patterns) the key is for; empty: every host."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SshKey:
        # ``aliases`` and ``hostnames`` are optional: a server that predates them sends neither.
        return cls(
            fingerprint=str(data["fingerprint"]).strip(),
            private_key=str(data["private_key"]),
            aliases=tuple(str(alias).strip() for alias in data.get("aliases") or []),
            hostnames=tuple(str(host).strip() for host in data.get("hostnames") or []),
        )


@dataclass(frozen=True)
class Step:
    """One normalised step: its type, display name and the rest of its keys as given."""

    type: str
    name: str
    args: dict[str, Any]

    @classmethod
    def from_json(cls, data: dict[str, Any] | str) -> Step:
        if isinstance(data, str):
            data = {"type": data}
        elif "type" not in data and len(data) == 1:  # the compiler's own form, e.g. nested in `when`
            ((step_type, value),) = data.items()
            if isinstance(value, dict):
                data = {"type": step_type, **value}
            else:
                data = {"type": step_type, "command": value} if value is not None else {"type": step_type}
        args = {key: value for key, value in data.items() if key != "type"}
        step_type = str(data.get("type", ""))
        return cls(type=step_type, name=str(args.get("name") or default_step_name(step_type, args)), args=args)


def default_step_name(step_type: str, args: dict[str, Any]) -> str:
    if step_type == "checkout":
        return "Checkout code"
    if step_type in ("run", "deploy"):
        command = str(args.get("command") or "").strip()
        return command.splitlines()[0] if command else step_type
    return step_type


@dataclass(frozen=True)
class Task:
    task_id: str
    task_token: str
    lease_seconds: float
    heartbeat_seconds: float
    job: JobInfo
    checkout: Checkout | None
    executor: ExecutorSpec
    environment: dict[str, str]
    secrets: list[str]
    steps: list[Step]
    ssh_keys: list[SshKey] = field(default_factory=list)
    test_timings: dict[str, Any] | None = None
    """Seconds per test name, by timings type, for ``circleci tests split --split-by=timings``."""

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        return cls(
            task_id=str(data["task_id"]),
            task_token=str(data["task_token"]),
            lease_seconds=float(data.get("lease_seconds") or 60),
            heartbeat_seconds=float(data.get("heartbeat_seconds") or 2),
            job=JobInfo.from_json(data.get("job") or {}),
            checkout=Checkout.from_json(data.get("checkout")),
            executor=ExecutorSpec.from_json(data.get("executor")),
            environment={str(k): "" if v is None else str(v) for k, v in (data.get("environment") or {}).items()},
            secrets=[str(value) for value in data.get("secrets") or []],
            steps=[Step.from_json(step) for step in data.get("steps") or []],
            ssh_keys=[SshKey.from_json(key) for key in data.get("ssh_keys") or []],
            test_timings=data.get("test_timings") if isinstance(data.get("test_timings"), dict) else None,
        )


@dataclass
class Backoff:
    """Exponential back-off with jitter between retries."""

    first: float = 0.2
    most: float = 5.0
    _next: float = field(default=0.0, init=False)

    def delay(self) -> float:
        self._next = self.first if self._next == 0 else min(self._next * 2, self.most)
        return self._next * random.uniform(0.5, 1.0)


class RunnerClient:
    """Talks to one server with one runner token. ``transport`` is for tests only."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        runner_name: str,
        backoff: Backoff | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.runner_name = runner_name
        self.url = url.rstrip("/")
        self._token = token
        self._backoff_template = backoff or Backoff()
        self.direct = _direct_endpoint(url) if transport is None else None
        """(host, port, path prefix) for blob uploads and downloads over a plain socket; None: httpx only."""
        self.backoff_first, self.backoff_most = self._backoff_template.first, self._backoff_template.most
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=httpx.Timeout(30.0, connect=10.0),
            transport=transport,
            headers={"User-Agent": USER_AGENT},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    @property
    def http(self) -> httpx.AsyncClient:
        return self._http

    async def claim(self, resource_class: str, wait_seconds: int = 30) -> Task | None:
        """One long-poll for a task: the task, or None when none came in ``wait_seconds``.
        Retries transport errors and 5xx answers for as long as it takes."""
        response = await self.send(
            "POST",
            f"{API}/claim",
            self._token,
            json={"resource_class": resource_class, "runner_name": self.runner_name, "wait_seconds": wait_seconds},
            timeout=wait_seconds + 15.0,
            give_up_after=None,
        )
        if response.status_code == 204:
            return None
        if response.status_code in (401, 403):
            raise Unauthorized(_message(response))
        if response.status_code != 200:
            raise ProtocolError(f"claim answered {response.status_code}: {_message(response)}")
        try:
            return Task.from_json(response.json())
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ProtocolError(f"claim answered a task this runner cannot read: {exc!r}") from exc

    def for_task(self, task: Task) -> TaskClient:
        return TaskClient(self, task)

    async def send(
        self,
        method: str,
        path: str,
        token: str,
        *,
        give_up_after: float | None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, retrying transport errors and 5xx; after ``give_up_after`` seconds of failures,
        raise ``TaskLost`` (None: never give up)."""
        backoff = Backoff(self._backoff_template.first, self._backoff_template.most)
        started = time.monotonic()
        headers = {**(headers or {}), "Authorization": f"Bearer {token}"}
        while True:
            try:
                response = await self._http.request(
                    method, path, headers=headers, timeout=timeout or httpx.USE_CLIENT_DEFAULT, **kwargs
                )
                if response.status_code < 500:
                    return response
                problem = f"server answered {response.status_code}"
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if give_up_after is not None and time.monotonic() - started >= give_up_after:
                raise TaskLost(f"server unreachable for {give_up_after:.0f}s ({problem})")
            delay = backoff.delay()
            log.warning("retrying", extra={"path": path, "problem": problem, "retry_in": round(delay, 2)})
            await asyncio.sleep(delay)


class FileBody:
    """A request body read from a file in chunks; iterable again, so a retried call resends it whole.

    Its length is taken when it is made and sent as ``Content-Length``: a chunked body costs a copy of
    every chunk on the way out (h11 joins each with its framing). A file that shrinks meanwhile fails
    the call rather than sending less than announced; one that grows is sent up to that length."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.size = path.stat().st_size

    async def __aiter__(self) -> AsyncIterator[bytes]:
        left = self.size
        with open(self.path, "rb") as handle:
            while left > 0:
                chunk = handle.read(min(FILE_CHUNK, left))
                if not chunk:
                    raise ProtocolError(f"{self.path.name} shrank while it was being sent")
                left -= len(chunk)
                yield chunk


class TaskClient:
    """The calls made for one claimed task, with its task token."""

    def __init__(self, runner: RunnerClient, task: Task) -> None:
        self._runner = runner
        self._task = task
        self._base = f"{API}/tasks/{task.task_id}"

    async def heartbeat(self) -> bool:
        """Extend the lease; True when the server asks to cancel the task."""
        body = await self._call("POST", "/heartbeat", json={})
        return bool(body.get("cancel"))

    async def step_event(
        self,
        index: int,
        name: str,
        status: str,
        exit_code: int | None,
        started_at: str,
        ended_at: str | None,
    ) -> None:
        await self._call(
            "POST",
            f"/steps/{index}",
            json={
                "name": name,
                "status": status,
                "exit_code": exit_code,
                "started_at": started_at,
                "ended_at": ended_at,
            },
        )

    async def step_output(self, index: int, data: bytes) -> None:
        await self._call(
            "POST",
            f"/steps/{index}/output",
            content=data,
            extra_headers={"Content-Type": "application/octet-stream"},
        )

    async def complete(self, status: str, message: str | None, *, patience: float | None = None) -> None:
        """``patience``: give up after this many seconds of failures (default: the lease)."""
        await self._call("POST", "/complete", json={"status": status, "message": message}, patience=patience)

    # -- storage (caches, workspace, artifacts, test results) --------------------------------------

    async def find_cache(self, keys: Sequence[str]) -> str | None:
        """The key of the newest cache matching the first of ``keys`` that matches, or None."""
        response = await self._send("GET", "/caches", params={"keys": ",".join(keys)})
        if response.status_code == 404:
            return None
        self._check(response, "/caches")
        return str(response.json()["key"])

    async def cache_exists(self, key: str) -> bool:
        path = f"/caches/{quote(key, safe='')}"
        response = await self._send("HEAD", path)
        if response.status_code == 404:
            return False
        self._check(response, path)
        return True

    async def download_cache(self, key: str, target: Path) -> None:
        await self._download(f"/caches/{quote(key, safe='')}", target)

    async def upload_cache(self, key: str, source: Path) -> bool:
        """False when a cache with this key exists already (caches are immutable)."""
        path = f"/caches/{quote(key, safe='')}"
        response = await self._upload(path, source)
        if response.status_code == 409 and not _message(response).startswith("task "):
            return False
        self._check(response, path)
        return True

    async def upload_layer(self, source: Path) -> None:
        self._check(await self._upload("/workspace", source), "/workspace")

    async def workspace_layers(self) -> list[str]:
        response = await self._send("GET", "/workspace")
        self._check(response, "/workspace")
        return [str(layer) for layer in response.json()]

    async def download_layer(self, layer_id: str, target: Path) -> None:
        await self._download(f"/workspace/{quote(layer_id, safe='')}", target)

    async def upload_artifact(self, destination: str, source: Path) -> None:
        self._check(await self._upload("/artifacts", source, params={"path": destination}), "/artifacts")

    async def upload_test_results(self, source: str, file: Path) -> int:
        """The number of tests stored; ``ProtocolError`` with the server's message when it refuses them."""
        response = await self._upload("/tests", file, params={"source": source})
        self._check(response, "/tests")
        return int(response.json().get("tests", 0))

    async def record_release(self, marker: dict[str, Any]) -> tuple[int, str]:
        """A deploy marker of the job: the server's status and its message (or the marker's status). A
        refused marker is the job's mistake, not the task's: it is answered, not raised."""
        response = await self._send("POST", "/releases", json=marker)
        if response.status_code in (401, 403):
            raise TaskLost(f"/releases answered {response.status_code}: {_message(response)}")
        if response.status_code < 400:
            return response.status_code, str(response.json().get("status", ""))
        return response.status_code, _message(response)

    async def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._runner.send(
            method, self._base + path, self._task.task_token, give_up_after=self._task.lease_seconds, **kwargs
        )

    async def _upload(self, path: str, source: Path, params: dict[str, str] | None = None) -> httpx.Response:
        direct = self._runner.direct
        if direct is None:
            body = FileBody(source)
            return await self._send(
                "PUT",
                path,
                params=params,
                content=body,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(body.size)},
            )
        query = "?" + urlencode(params, quote_via=quote) if params else ""
        headers = {"Authorization": f"Bearer {self._task.task_token}", "Content-Type": "application/octet-stream"}
        backoff = Backoff(self._runner.backoff_first, self._runner.backoff_most)
        started = time.monotonic()
        while True:  # as ``RunnerClient.send``: transport errors and 5xx are retried, the body sent whole again
            try:
                response = await _direct(direct, "PUT", self._base + path + query, headers, source=source)
                if response.status_code < 500:
                    return response
                problem = f"server answered {response.status_code}"
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started >= self._task.lease_seconds:
                raise TaskLost(f"server unreachable for {self._task.lease_seconds:.0f}s ({problem})")
            await asyncio.sleep(backoff.delay())

    async def _download(self, path: str, target: Path) -> None:
        """Stream a stored blob into ``target`` (retried whole on transport errors and 5xx)."""
        backoff = Backoff()
        started = time.monotonic()
        headers = {"Authorization": f"Bearer {self._task.task_token}"}
        direct = self._runner.direct
        while True:
            try:
                if direct is not None:
                    response = await _direct(direct, "GET", self._base + path, headers, target=target)
                    if response.status_code == 200:
                        return
                    if response.status_code < 500:
                        self._check(response, path)
                        raise ProtocolError(f"{path} answered {response.status_code}")
                else:
                    async with self._runner.http.stream("GET", self._base + path, headers=headers) as response:
                        if response.status_code < 500:
                            if response.status_code != 200:
                                await response.aread()
                                self._check(response, path)
                            with open(target, "wb") as handle:
                                async for chunk in response.aiter_bytes():  # as they arrive: no re-chunking copies
                                    handle.write(chunk)
                            return
                problem = f"server answered {response.status_code}"
            except (httpx.TransportError, OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - started >= self._task.lease_seconds:
                raise TaskLost(f"server unreachable for {self._task.lease_seconds:.0f}s ({problem})")
            await asyncio.sleep(backoff.delay())

    @staticmethod
    def _check(response: httpx.Response, path: str) -> None:
        if response.status_code in (401, 403, 409):
            raise TaskLost(f"{path} answered {response.status_code}: {_message(response)}")
        if response.status_code == 404:
            raise Gone(_message(response) or f"{path} answered 404")
        if response.status_code >= 400:
            raise ProtocolError(_message(response) or f"{path} answered {response.status_code}")

    async def _call(
        self,
        method: str,
        path: str,
        *,
        extra_headers: dict[str, str] | None = None,
        patience: float | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        if extra_headers:
            kwargs["headers"] = extra_headers
        give_up_after = self._task.lease_seconds if patience is None else min(patience, self._task.lease_seconds)
        response = await self._runner.send(
            method, self._base + path, self._task.task_token, give_up_after=give_up_after, **kwargs
        )
        if response.status_code in (401, 403, 404, 409):
            raise TaskLost(f"{path} answered {response.status_code}: {_message(response)}")
        if response.status_code >= 400:
            raise ProtocolError(f"{path} answered {response.status_code}: {_message(response)}")
        if not response.content:
            return {}
        body = response.json()
        return body if isinstance(body, dict) else {}


# -- blob bodies over a plain socket ----------------------------------------------------------------

DIRECT_READ = 1024 * 1024
DIRECT_TIMEOUT = 30.0
PROXY_VARIABLES = ("http_proxy", "all_proxy")


def _direct_endpoint(url: str) -> tuple[str, int, str] | None:
    """Where downloads may go over a plain socket: an ``http://`` server that no proxy setting of the
    environment could apply to (httpx honours them; this path does not, so it steps aside)."""
    parsed = urlsplit(url)
    if parsed.scheme != "http" or not parsed.hostname:
        return None
    if any(os.environ.get(name) or os.environ.get(name.upper()) for name in PROXY_VARIABLES):
        return None
    return parsed.hostname, parsed.port or 80, parsed.path.rstrip("/")


async def _direct(
    endpoint: tuple[str, int, str],
    method: str,
    path: str,
    headers: dict[str, str],
    *,
    source: Path | None = None,
    target: Path | None = None,
) -> httpx.Response:
    """One HTTP/1.1 exchange for the body of a blob, with the standard library's ``http.client`` on a
    thread: ``source`` is sent 1 MiB at a time, a 200's body is written to ``target`` as it comes,
    1 MiB at a time.

    httpx reads a body 64 KiB at a time through three layers (httpcore, h11, anyio, which pauses and
    resumes the socket for every read), and sends one through two copies: a 200 MB cache cost the
    runner ~1.1 s of CPU to download and ~0.7 s to upload that way (docs/performance.md, issue 6).
    The answer comes back as an ``httpx.Response`` (a 200's body in ``target``, if given; any other's
    in the response), so callers check it as they check httpx's. Cancelled, the exchange's socket is
    shut down, which ends the thread's blocking call at once."""
    exchange = _BlobExchange(endpoint, method, path, headers, source, target)
    try:
        return await asyncio.shield(asyncio.to_thread(exchange.run))
    except asyncio.CancelledError:
        exchange.abort()
        raise


class _BlobExchange:
    def __init__(
        self,
        endpoint: tuple[str, int, str],
        method: str,
        path: str,
        headers: dict[str, str],
        source: Path | None,
        target: Path | None,
    ) -> None:
        host, port, prefix = endpoint
        self._connection = http.client.HTTPConnection(host, port, timeout=DIRECT_TIMEOUT, blocksize=DIRECT_READ)
        self._request = (method, prefix + path)
        self._headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **headers}
        self._source, self._target = source, target

    def abort(self) -> None:
        sock = self._connection.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> httpx.Response:
        method, url = self._request
        try:
            if self._source is None:
                self._connection.request(method, url, headers=self._headers)
            else:
                with open(self._source, "rb") as body:
                    size = os.fstat(body.fileno()).st_size
                    try:
                        self._connection.request(method, url, body, {**self._headers, "Content-Length": str(size)})
                    except ConnectionError:
                        pass  # a server refusing the body may answer and close first: read its answer
                    else:
                        if body.tell() < size:  # else the server would wait for the rest
                            raise ProtocolError(f"{self._source.name} shrank while it was being sent")
            response = self._connection.getresponse()
            fields = {name.lower(): value for name, value in response.getheaders()}
            if response.status != 200 or self._target is None:
                return httpx.Response(response.status, headers=fields, content=response.read())
            with open(self._target, "wb") as handle:
                while chunk := response.read(DIRECT_READ):
                    handle.write(chunk)
            if response.length:  # read(amt) ends quietly when the connection ends early
                raise http.client.IncompleteRead(b"", response.length)
            return httpx.Response(response.status, headers=fields)
        finally:
            self._connection.close()


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:200]


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

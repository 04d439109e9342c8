"""The agent's HTTP client of the runner protocol: ``RunnerClient`` (claims, with the runner token)
and ``TaskClient`` (one claimed task's calls, with its task token), retrying transport errors and
5xx answers; blob bodies go through ``blobs.py``."""

from __future__ import annotations

import asyncio
import http.client
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from circlet.agent.protocol.blobs import FileBody, direct_endpoint, exchange_directly
from circlet.agent.protocol.payloads import Task
from circlet.agent.protocol.wire import API, USER_AGENT, Gone, ProtocolError, TaskLost, Unauthorized, message_of

log = logging.getLogger("circlet.agent")


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
        self.direct = direct_endpoint(url) if transport is None else None
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
            raise Unauthorized(message_of(response))
        if response.status_code != 200:
            raise ProtocolError(f"claim answered {response.status_code}: {message_of(response)}")
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
        if response.status_code == 409 and not message_of(response).startswith("task "):
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
            raise TaskLost(f"/releases answered {response.status_code}: {message_of(response)}")
        if response.status_code < 400:
            return response.status_code, str(response.json().get("status", ""))
        return response.status_code, message_of(response)

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
                response = await exchange_directly(direct, "PUT", self._base + path + query, headers, source=source)
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
                    response = await exchange_directly(direct, "GET", self._base + path, headers, target=target)
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
            raise TaskLost(f"{path} answered {response.status_code}: {message_of(response)}")
        if response.status_code == 404:
            raise Gone(message_of(response) or f"{path} answered 404")
        if response.status_code >= 400:
            raise ProtocolError(message_of(response) or f"{path} answered {response.status_code}")

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
            raise TaskLost(f"{path} answered {response.status_code}: {message_of(response)}")
        if response.status_code >= 400:
            raise ProtocolError(f"{path} answered {response.status_code}: {message_of(response)}")
        if not response.content:
            return {}
        body = response.json()
        return body if isinstance(body, dict) else {}

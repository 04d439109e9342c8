"""A small server that speaks the runner protocol (docs/runner-protocol.md) from memory, for the agent's
tests: it records every call and can be told to fail some of them, which the real server cannot.
``tests/agent/test_fake_server.py`` holds it to the real one (``circlet.runners.endpoints``): the
same routes and methods, the same statuses and answer keys for the same conversation."""

from __future__ import annotations

import json
import re
import secrets
import socket
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

API = "/api/v3/runner"
ROUTES = {
    "claim": ("POST", "/claim"),
    "heartbeat": ("POST", "/tasks/{task_id}/heartbeat"),
    "step": ("POST", "/tasks/{task_id}/steps/{index}"),
    "output": ("POST", "/tasks/{task_id}/steps/{index}/output"),
    "complete": ("POST", "/tasks/{task_id}/complete"),
}
"""What the fake serves, by name (the names ``failures`` takes): method and path under ``API``."""
_MATCHERS = {
    name: (method, re.compile(re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", API + path) + "$"))
    for name, (method, path) in ROUTES.items()
}


def route_of(method: str, path: str) -> tuple[str, dict[str, str]] | None:
    """The name of the route that serves ``method path``, and its path parameters."""
    for name, (route_method, pattern) in _MATCHERS.items():
        match = pattern.match(path.partition("?")[0])
        if match is not None and route_method == method:
            return name, match.groupdict()
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Recorded:
    claims: int = 0
    heartbeats: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    events: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    outputs: dict[tuple[str, int], bytearray] = field(default_factory=lambda: defaultdict(bytearray))
    output_calls: list[tuple[str, int, int, float]] = field(default_factory=list)
    """(task id, step index, bytes, time) of each output call."""
    completes: dict[str, dict[str, Any]] = field(default_factory=dict)
    most_output_in_flight: int = 0


class FakeRunnerServer:
    def __init__(self, token: str = "runner-token", resource_class: str = "local", port: int | None = None) -> None:
        self.token = token
        self.resource_class = resource_class
        self.recorded = Recorded()
        self.queue: list[dict[str, Any]] = []
        self.task_tokens: dict[str, str] = {}
        self.cancel: set[str] = set()
        self.expired: set[str] = set()
        self.failures: dict[str, list[int]] = defaultdict(list)
        """Path suffix ("claim", "heartbeat", "output", "complete", ...) -> statuses to answer first."""
        self.output_delay = 0.0
        self._changed = threading.Condition()
        self._in_flight = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", port or free_port()), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> FakeRunnerServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def enqueue(self, task: dict[str, Any]) -> None:
        with self._changed:
            self.queue.append(task)
            self._changed.notify_all()

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("timed out waiting for the runner")
                self._changed.wait(remaining)

    def output(self, task_id: str, index: int) -> bytes:
        return bytes(self.recorded.outputs[(task_id, index)])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                status, answer = server._answer(self.path, token, body)
                payload = b"" if answer is None else json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _injected(self, suffix: str) -> int | None:
        with self._changed:
            return self.failures[suffix].pop(0) if self.failures[suffix] else None

    def _answer(self, path: str, token: str, body: bytes) -> tuple[int, dict[str, Any] | None]:
        route = route_of("POST", path)
        if route is None:
            return 404, {"message": "Not Found"}
        name, params = route
        injected = self._injected(name)
        if injected is not None:
            return injected, {"message": "injected"}
        if name == "claim":
            return self._claim(token, json.loads(body))
        task_id = params["task_id"]
        if self.task_tokens.get(task_id) != token:
            if token in self.task_tokens.values():
                return 403, {"message": "This task token is for another task."}
            return 401, {"message": "unknown task token"}
        if task_id in self.expired:
            return 409, {"message": "task lease expired"}
        if task_id in self.recorded.completes:
            return 409, {"message": "task has ended"}
        with self._changed:
            try:
                return self._task_call(name, task_id, params, body)
            finally:
                self._changed.notify_all()

    def _claim(self, token: str, request: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        if token != self.token:
            return 401, {"message": "unknown runner token"}
        if request.get("resource_class") != self.resource_class:
            return 403, {"message": "wrong resource class"}
        deadline = time.monotonic() + float(request.get("wait_seconds", 30))
        with self._changed:
            self.recorded.claims += 1
            self._changed.notify_all()
            while not self.queue:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return 204, None
                self._changed.wait(remaining)
            task = self.queue.pop(0)
            task["task_token"] = self.task_tokens[task["task_id"]] = secrets.token_hex(8)
            return 200, task

    def _task_call(
        self, name: str, task_id: str, params: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, Any] | None]:
        recorded = self.recorded
        if name == "heartbeat":
            recorded.heartbeats[task_id] += 1
            return 200, {"lease_seconds": 60, "cancel": task_id in self.cancel}
        if name == "complete":
            recorded.completes[task_id] = json.loads(body)
            return 200, {}
        index = int(params["index"])
        if name == "step":
            recorded.events[task_id].append({"index": index, **json.loads(body)})
            return 200, {}
        self._in_flight += 1
        recorded.most_output_in_flight = max(recorded.most_output_in_flight, self._in_flight)
        self._changed.release()
        try:
            time.sleep(self.output_delay)
        finally:
            self._changed.acquire()
            self._in_flight -= 1
        recorded.outputs[(task_id, index)] += body
        recorded.output_calls.append((task_id, index, len(body), time.monotonic()))
        return 200, {}

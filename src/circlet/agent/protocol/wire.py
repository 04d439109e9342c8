"""What the agent's modules of the runner protocol share (docs/runner-protocol.md): where the API
is, how the runner names itself, and what the server's answers mean as errors."""

from __future__ import annotations

import importlib.metadata

import httpx

API = "/api/v3/runner"


def _user_agent() -> str:
    """``circlet-runner/VERSION``: the server lists runner instances with their version."""
    try:
        return f"circlet-runner/{importlib.metadata.version('circlet')}"
    except importlib.metadata.PackageNotFoundError:
        return "circlet-runner"


USER_AGENT = _user_agent()


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


def message_of(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message", "")) if isinstance(body, dict) else str(body)[:200]

"""The task a claim hands the agent (docs/runner-protocol.md), as typed dataclasses read from the
server's JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

"""A Docker-compatible container CLI (``podman`` or ``docker``): which one this runner uses, and how
to call it. Only the CLI is used (no engine API), so anything that speaks ``docker``'s command line
and answers ``info`` works."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

log = logging.getLogger("circlet.agent")

EngineKind = Literal["podman", "docker"]
EngineChoice = Literal["auto", "podman", "docker", "none"]
ENGINE_CHOICES: tuple[EngineChoice, ...] = ("auto", "podman", "docker", "none")
PROBE_SECONDS = 15.0
COMMAND_SECONDS = 120.0
"""How long an engine command other than a pull may take (creating a pod, starting a container)."""


@dataclass(frozen=True)
class EngineResult:
    exit_code: int | None
    """None when the command did not finish in time (it was killed)."""
    output: str

    @property
    def ok(self) -> bool:
        return self.exit_code == 0

    def last_line(self) -> str:
        lines = [line.strip() for line in self.output.splitlines() if line.strip()]
        if self.exit_code is None:
            return "the container engine did not answer in time"
        return lines[-1] if lines else f"exit code {self.exit_code}"


@dataclass(frozen=True)
class ContainerEngine:
    """The CLI with its global arguments, and the environment it runs in."""

    kind: EngineKind
    command: tuple[str, ...]
    """The executable, then global arguments (e.g. ``--runtime runc --cgroup-manager=cgroupfs``)."""
    environment: Mapping[str, str] = field(default_factory=dict)
    rootless: bool = False
    """Whether the engine's root is this (unprivileged) user: then files a container's root
    writes into a bind mount belong to us, and a container user's files to a sub-uid."""

    def argv(self, *args: str) -> list[str]:
        return [*self.command, *args]

    async def call(
        self, *args: str, timeout: float | None = COMMAND_SECONDS, stdin: bytes | None = None
    ) -> EngineResult:
        """Run one engine command to its end (stdout and stderr together), killed past ``timeout``."""
        process = await asyncio.create_subprocess_exec(
            *self.argv(*args),
            env=dict(self.environment),
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(stdin), timeout)
        except TimeoutError:
            _kill(process)
            await process.wait()
            return EngineResult(None, "")
        except BaseException:
            _kill(process)
            raise
        assert process.returncode is not None
        return EngineResult(process.returncode, output.decode(errors="replace"))


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def client_environment(containers_conf: Path | None) -> dict[str, str]:
    """The agent's environment without its own settings (the runner token above all), and
    ``CONTAINERS_CONF`` when one is given (podman reads only that file then)."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("CIRCLET_")}
    if containers_conf is not None:
        environment["CONTAINERS_CONF"] = str(containers_conf)
    return environment


async def probe(kind: EngineKind, global_args: Sequence[str], containers_conf: Path | None) -> ContainerEngine | str:
    """The engine when ``KIND info`` answers, else why not."""
    executable = shutil.which(kind)
    if executable is None:
        return f"there is no {kind} command on the PATH"
    environment = client_environment(containers_conf if kind == "podman" else None)
    engine = ContainerEngine(kind, (executable, *global_args), environment)
    # podman says whether it runs rootless; docker lists "name=rootless" among its security options.
    template = "{{.Host.Security.Rootless}}" if kind == "podman" else "{{json .SecurityOptions}}"
    answer = await engine.call("info", "--format", template, timeout=PROBE_SECONDS)
    if not answer.ok:
        return f"{kind} info failed: {answer.last_line()}"
    text = answer.output.strip()
    rootless = text == "true" if kind == "podman" else "rootless" in text
    return ContainerEngine(kind, engine.command, environment, rootless)


async def detect_engine(
    choice: EngineChoice, global_args: Sequence[str] = (), containers_conf: Path | None = None
) -> ContainerEngine | None:
    """The engine ``choice`` names, if it answers; ``auto``: podman, else docker, else none.
    A named engine that does not answer is logged and treated as none (the ``--docker`` setting
    then decides what docker jobs do)."""
    if choice == "none":
        return None
    kinds: tuple[EngineKind, ...] = ("podman", "docker") if choice == "auto" else (choice,)
    problems = []
    for kind in kinds:
        found = await probe(kind, global_args, containers_conf)
        if isinstance(found, ContainerEngine):
            log.info("container engine", extra={"engine": kind, "command": shlex.join(found.command)})
            return found
        problems.append(found)
    log.warning("no container engine", extra={"choice": choice, "problems": problems})
    return None

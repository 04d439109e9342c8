"""A test double of ``circlet.agent.backends.Backend``: no process and no container, every call
recorded. A ``run`` step "runs" by echoing its script and exits with the code its script's first
line names (``exit N``); setup can be told to fail, or to wait until it is cancelled.
``tests/agent/test_backends.py`` holds it to the real backends, signature by signature."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from circlet.agent.backends import Shell, StepCommand
from circlet.agent.backends.base import Note
from circlet.agent.isolation import JobUser
from circlet.agent.process import ProcessResult

EXIT = re.compile(r"^exit (\d+)$", re.MULTILINE)


class RecordingBackend:
    def __init__(
        self,
        *,
        setup_problem: str | None = None,
        setup_waits: bool = False,
        notes: Sequence[str] = (),
        secrets: Sequence[str] = (),
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self.calls: list[str] = []
        self.commands: list[StepCommand] = []
        self.setup_started = asyncio.Event()
        self._setup_problem = setup_problem
        self._setup_waits = setup_waits
        self._notes = list(notes)
        self._secrets = list(secrets)
        self._variables = dict(variables or {"FROM_BACKEND": "yes"})

    @property
    def job_user(self) -> JobUser | None:
        return None

    @property
    def confined(self) -> bool:
        return False

    @property
    def secrets(self) -> Sequence[str]:
        return self._secrets

    async def setup(self, note: Note) -> str | None:
        self.calls.append("setup")
        self.setup_started.set()
        for line in self._notes:
            await note(line)
        if self._setup_waits:
            await asyncio.Event().wait()
        return self._setup_problem

    def environment(self, task_environment: Mapping[str, str]) -> dict[str, str]:
        self.calls.append("environment")
        return {"PATH": "/double/bin", **self._variables, **task_environment}

    def default_shell(self) -> Shell:
        return Shell(("double-sh",), False)

    async def run(self, command: StepCommand) -> ProcessResult:
        self.calls.append(f"run {command.index}")
        self.commands.append(command)
        script = Path(command.argv[-1]).read_text()
        await command.output(script.encode())
        code = EXIT.search(script)
        return ProcessResult(int(code.group(1)) if code else 0)

    async def agent_wrote(self) -> None:
        self.calls.append("agent_wrote")

    async def stop(self) -> None:
        self.calls.append("stop")

    async def destroy(self) -> None:
        self.calls.append("destroy")

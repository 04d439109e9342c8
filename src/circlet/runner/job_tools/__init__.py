"""The ``circleci`` and ``circleci-agent`` commands a job finds first on its ``PATH``.

The agent writes two small scripts into the task's ``bin/`` directory; each runs
``python -I -m circlet.runner.job_tools`` with the agent's own interpreter, so they work wherever the
agent runs and a job's ``PYTHONPATH`` cannot break them. They talk to the agent only through files
in ``$CIRCLE_INTERNAL_TASK_DATA``: the halt marker (``step halt``) and the timings (``tests split``).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

COMMANDS = ("circleci", "circleci-agent")
HALT_MARKER = "halt"
"""Written by ``step halt`` into ``$CIRCLE_INTERNAL_TASK_DATA``; the agent ends the job after the step."""
TIMINGS_FILE = "timings.json"
"""The task's ``test_timings``, written by the agent into ``$CIRCLE_INTERNAL_TASK_DATA``."""


def install(bin_dir: Path) -> None:
    """Write the ``circleci`` and ``circleci-agent`` scripts into ``bin_dir``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    python = shlex.quote(sys.executable)
    for command in COMMANDS:
        script = bin_dir / command
        script.write_text(f'#!/bin/sh\nexec {python} -I -m circlet.runner.job_tools {command} "$@"\n')
        script.chmod(0o755)

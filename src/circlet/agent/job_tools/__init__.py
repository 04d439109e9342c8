"""The ``circleci`` and ``circleci-agent`` commands a job finds first on its ``PATH``.

The agent writes two small scripts into the task's ``bin/`` directory; each runs
``python -I -m circlet.agent.job_tools`` with the agent's own interpreter, so they work wherever the
agent runs and a job's ``PYTHONPATH`` cannot break them. They talk to the agent only through files
in ``$CIRCLE_INTERNAL_TASK_DATA``: the halt marker (``step halt``), the timings (``tests split``) and
the deploy markers (``run release``).
"""

from __future__ import annotations

import shlex
import sys
import zipfile
from pathlib import Path

COMMANDS = ("circleci", "circleci-agent")
HALT_MARKER = "halt"
"""Written by ``step halt`` into ``$CIRCLE_INTERNAL_TASK_DATA``; the agent ends the job after the step."""
RELEASES_FILE = "releases.jsonl"
"""Deploy markers (``run release plan|update|log``), one JSON object a line, appended by the job; the
agent forwards the new ones to the server after each step."""
TIMINGS_FILE = "timings.json"
"""The task's ``test_timings``, written by the agent into ``$CIRCLE_INTERNAL_TASK_DATA``."""


ARCHIVE = "circleci.pyz"
PACKAGED = ("__init__.py", "agent/__init__.py", "agent/durations.py", "agent/job_tools/*.py")
"""What the helpers need of circlet (the standard library aside), for a job that cannot run the
agent's interpreter."""


def install(bin_dir: Path, *, portable: bool = False) -> None:
    """Write the ``circleci`` and ``circleci-agent`` scripts into ``bin_dir``. ``portable``: the job
    may not run the agent's interpreter (a job user, and the interpreter in root's home), so the
    helpers go into a zip application run by the first ``python3`` on the job's ``PATH``."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    if portable:
        _write_archive(bin_dir / ARCHIVE)
        run = f'python3 -I "$(dirname "$0")/{ARCHIVE}"'
    else:
        run = f"{shlex.quote(sys.executable)} -I -m circlet.agent.job_tools"
    for command in COMMANDS:
        script = bin_dir / command
        script.write_text(f'#!/bin/sh\nexec {run} {command} "$@"\n')
        script.chmod(0o755)


def _write_archive(path: Path) -> None:
    package = Path(__file__).resolve().parent.parent.parent
    with zipfile.ZipFile(path, "w") as archive:
        for pattern in PACKAGED:
            for source in sorted(package.glob(pattern)):
                archive.write(source, f"circlet/{source.relative_to(package).as_posix()}")
        archive.writestr(
            "__main__.py", "import runpy\nrunpy.run_module('circlet.agent.job_tools', run_name='__main__')\n"
        )
    path.chmod(0o644)

"""The ``circlet`` executable. ``circlet runner`` goes straight to the agent: the agent imports
nothing of the server, and importing the server (FastAPI, SQLAlchemy, the spec) first would double a
runner's resident memory (~100 MiB instead of ~47 MiB idle) on every runner machine."""

from __future__ import annotations

import sys


def main() -> None:
    if sys.argv[1:2] == ["runner"]:
        import typer

        from circlet.agent.cli import runner_command

        command = typer.Typer(add_completion=False)
        command.command(help="Start a runner agent that claims and runs jobs from a circlet server.")(runner_command)
        command(args=sys.argv[2:], prog_name="circlet runner")
        return
    from circlet.cli import main as circlet_main

    circlet_main()

"""The command line of ``circleci`` / ``circleci-agent`` inside a job: ``tests glob|split|run``,
``env subst`` and ``step halt``, behaving as CircleCI's own do (docs/runner.md)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from circlet.agent.durations import parse_duration
from circlet.agent.job_tools import HALT_MARKER, RELEASES_FILE, TIMINGS_FILE
from circlet.agent.job_tools.globbing import glob
from circlet.agent.job_tools.splitting import (
    TIMINGS_TYPES,
    file_sizes,
    split_by_name,
    split_by_timings,
    split_by_weight,
)

VARIABLE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def note(text: str) -> None:
    print(text, file=sys.stderr)


def task_data() -> Path | None:
    directory = os.environ.get("CIRCLE_INTERNAL_TASK_DATA")
    return Path(directory) if directory else None


def read_names(source: str | None) -> list[str]:
    """Whitespace-separated names from ``source`` (a file) or stdin, each once, in their order."""
    text = Path(source).read_text() if source else sys.stdin.read()
    return list(dict.fromkeys(text.split()))


def node_share(arguments: argparse.Namespace, names: list[str]) -> list[str]:
    index, total = arguments.index, arguments.total
    if arguments.split_by == "filesize":
        return split_by_weight(file_sizes(names, note), index, total)
    if arguments.split_by == "timings":
        data = task_data()
        return split_by_timings(
            names,
            index,
            total,
            timings_file=data / TIMINGS_FILE if data else Path(os.devnull),
            timings_type=arguments.timings_type,
            time_default=arguments.time_default,
            note=note,
        )
    return split_by_name(names, index, total)


def tests_glob(arguments: argparse.Namespace) -> int:
    for path in glob(arguments.patterns):
        print(path)
    return 0


def tests_split(arguments: argparse.Namespace) -> int:
    for name in node_share(arguments, read_names(arguments.file)):
        print(name)
    return 0


def tests_run(arguments: argparse.Namespace) -> int:
    """Pipe this node's share, one name a line, to the command (typically ``xargs TOOL``)."""
    share = node_share(arguments, read_names(None))
    if arguments.verbose:
        note(f"circleci tests run: node {arguments.index} of {arguments.total} runs {len(share)} tests: {share}")
    if not share:
        note(f"circleci tests run: no tests for node {arguments.index}; the command is not run")
        return 0
    shell = "/bin/bash" if shutil.which("/bin/bash") else "/bin/sh"
    names = "".join(f"{name}\n" for name in share)
    return subprocess.run([shell, "-c", arguments.command], input=names, text=True, check=False).returncode


def env_subst(arguments: argparse.Namespace) -> int:
    """``$VAR`` and ``${VAR}`` replaced by the variable's value, an unset one by nothing."""

    def value(match: re.Match[str]) -> str:
        return os.environ.get(match.group(1) or match.group(2), "")

    if arguments.text is not None:
        print(VARIABLE.sub(value, arguments.text))
    else:
        sys.stdout.write(VARIABLE.sub(value, sys.stdin.read()))
    return 0


def step_halt(_: argparse.Namespace) -> int:
    data = task_data()
    if data is None or not data.is_dir():
        note("step halt: not inside a circlet job (no $CIRCLE_INTERNAL_TASK_DATA)")
        return 1
    (data / HALT_MARKER).touch()
    note("step halt: the job ends successfully after this step")
    return 0


def run_release(arguments: argparse.Namespace) -> int:
    """``run release plan|update|log``: the marker is queued for the agent, which sends it to the
    server when the step ends (refusals are written into the step's output)."""
    data = task_data()
    if data is None or not data.is_dir():
        note("run release: not inside a circlet job (no $CIRCLE_INTERNAL_TASK_DATA)")
        return 1
    action = arguments.subcommand
    if action in ("plan", "log") and not arguments.target_version:
        note(f"run release {action}: --target-version is required")
        return 2
    if action == "update" and not arguments.status:
        note("run release update: --status is required")
        return 2
    marker = {"action": action, "deploy_name": arguments.deploy_name or "default"}
    for name in ("environment_name", "component_name", "target_version", "namespace", "status", "failure_reason"):
        value = getattr(arguments, name, None)
        if value:
            marker[name] = value
    with (data / RELEASES_FILE).open("a") as handle:
        handle.write(json.dumps(marker) + "\n")
    note(f"run release {action}: recorded for {marker['deploy_name']}; sent to circlet when this step ends")
    return 0


def time_default(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_split_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--split-by", choices=("name", "filesize", "timings"), default="name")
    parser.add_argument("--index", type=int, default=int(os.environ.get("CIRCLE_NODE_INDEX") or 0))
    parser.add_argument("--total", type=int, default=int(os.environ.get("CIRCLE_NODE_TOTAL") or 1))
    parser.add_argument("--timings-type", choices=TIMINGS_TYPES, default=None, help="default: autodetected")
    parser.add_argument(
        "--time-default",
        type=time_default,
        default=None,
        help="weight of a name without timing (e.g. 10s); default: the mean of the known timings",
    )


def build_parser(command: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=command, description="circlet's job helpers (a part of CircleCI's CLI)")
    groups = parser.add_subparsers(dest="command", required=True)
    tests = groups.add_parser("tests").add_subparsers(dest="subcommand", required=True)
    glob_parser = tests.add_parser("glob", help="list the files matching shell patterns (** and {a,b} included)")
    glob_parser.add_argument("patterns", nargs="+")
    glob_parser.set_defaults(handler=tests_glob)
    split = tests.add_parser("split", help="this node's share of the names on stdin or in FILE")
    add_split_options(split)
    split.add_argument("file", nargs="?")
    split.set_defaults(handler=tests_split)
    run = tests.add_parser("run", help="split the names on stdin and pipe this node's share to a command")
    add_split_options(run)
    run.add_argument("--command", required=True)
    run.add_argument("--verbose", action="store_true")
    run.set_defaults(handler=tests_run)
    env = groups.add_parser("env").add_subparsers(dest="subcommand", required=True)
    subst = env.add_parser("subst", help="replace $VAR and ${VAR} in the argument or stdin")
    subst.add_argument("text", nargs="?")
    subst.set_defaults(handler=env_subst)
    step = groups.add_parser("step").add_subparsers(dest="subcommand", required=True)
    step.add_parser("halt", help="end the job successfully after the current step").set_defaults(handler=step_halt)
    release = groups.add_parser("run").add_subparsers(dest="group", required=True)
    actions = release.add_parser("release", help="deploy markers").add_subparsers(dest="subcommand", required=True)
    for action, text in (
        ("plan", "a deploy about to start (pending)"),
        ("update", "the status of a planned deploy"),
        ("log", "a deploy that already happened"),
    ):
        parser_ = actions.add_parser(action, help=text)
        parser_.add_argument("deploy_name", nargs="?", default="default")
        if action == "update":
            parser_.add_argument("--status", type=str.upper, choices=("RUNNING", "SUCCESS", "FAILED", "CANCELED"))
            parser_.add_argument("--failure-reason")
        else:
            parser_.add_argument("--environment-name")
            parser_.add_argument("--component-name")
            parser_.add_argument("--target-version")
            parser_.add_argument("--namespace")
        parser_.set_defaults(handler=run_release)
    return parser


def main(argv: Sequence[str]) -> int:
    """``argv``: the command's name (``circleci`` or ``circleci-agent``), then its arguments."""
    command, *arguments = argv or ["circleci"]
    parser = build_parser(command)
    parsed = parser.parse_args(arguments)
    if parsed.command == "tests" and parsed.subcommand in ("split", "run") and not 0 <= parsed.index < parsed.total:
        parser.error(f"--index must be from 0 to --total - 1 (got index {parsed.index}, total {parsed.total})")
    status: int = parsed.handler(parsed)
    return status

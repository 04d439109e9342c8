"""The ``config`` and ``orb`` commands, through typer's CliRunner and as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from circlet.config.cli import config_app, orb_app

runner = CliRunner()

VALID = """\
version: 2.1
parameters:
  tag: {type: string, default: "1"}
jobs:
  build:
    docker: [{image: "cimg/base:<< pipeline.parameters.tag >>"}]
    steps:
      - run: echo << pipeline.git.branch >>
workflows:
  main:
    jobs: [build]
"""
EXPECTED_PROCESSED = """\
version: 2
jobs:
  build:
    docker:
    - image: cimg/base:2
    steps:
    - run:
        command: echo dev
workflows:
  main:
    jobs:
    - build
  version: 2
"""
INVALID = """\
version: 2.1
jobs:
  build:
    docker: [{image: cimg/base:stable}]
    steps:
      - checkout
      - rn: make
workflows:
  main:
    jobs: [build, {deploy: {requires: [build]}}]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CIRCLET_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CIRCLET_ORB_DIRS", raising=False)
    return tmp_path / "home"


def write(tmp_path: Path, text: str | bytes, name: str = "config.yml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def test_validate_valid(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, VALID)
    result = runner.invoke(config_app, ["validate", str(path)])
    assert result.exit_code == 0
    assert result.output == f"Config file at {path} is valid.\n"


def test_validate_reports_every_error_with_position(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, INVALID)
    result = runner.invoke(config_app, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        f"{path}:7:9: jobs.build.steps[1]: unknown step 'rn' (did you mean 'run'?)",
        f"{path}:10:19: workflows.main.jobs[1]: job 'deploy' is not defined",
    ]


def test_validate_prints_warnings_and_passes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 2\njobs:\n  build:\n    docker: [{image: x}]\n"
        "    dependencies: {pre: [make]}\n    steps: [{type: checkout}]\n",
    )
    validated = _module("config", "validate", str(path), env=dict(os.environ, CIRCLET_HOME=str(tmp_path)))
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout == f"Config file at {path} is valid.\n"
    assert validated.stderr.splitlines() == [
        f"warning: {path}:5:5: jobs.build.dependencies: unknown job key 'dependencies' ignored (version 2.0 drops it)",
        f"warning: {path}:6:13: jobs.build.steps[0]: the legacy step form '- type: checkout' is read as '- checkout'",
    ]


def test_process_with_parameters_and_values(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, VALID)
    values = write(tmp_path, json.dumps({"git.branch": "dev"}), "values.json")
    result = runner.invoke(
        config_app, ["process", str(path), "--pipeline-parameters", '{"tag": "2"}', "--pipeline-values", f"@{values}"]
    )
    assert result.exit_code == 0, result.output
    processed, original = result.output.split("\n# Original config.yml file:\n")
    assert processed == EXPECTED_PROCESSED
    assert original.splitlines()[0] == "# version: 2.1"


def test_process_reads_standard_input(home: Path) -> None:
    result = runner.invoke(config_app, ["process", "-"], input=VALID)
    assert result.exit_code == 0
    assert result.output.startswith("version: 2\njobs:\n  build:\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"version: 2.1\n\xff\xfe\x00binary", "<stdin>:2:1: not UTF-8 text (byte 13)"),
        (b"version: 2.1\njobs: [unclosed\n", "<stdin>:3:1: YAML error: did not find expected ',' or ']'"),
        (b"just some words\n", "<stdin>:1:1: config must be a map"),
        (b"", "<stdin>:1:1: config is empty"),
        (
            b"a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
            b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
            b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
            b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
            "<stdin>:1:1: YAML error: document expands to more than 2000000 nodes (alias expansion limit)",
        ),
        (b"[" * 5000 + b"]" * 5000, "<stdin>:1:1001: YAML error: exceeded maximum nesting depth"),
        (b"[" * 600 + b"]" * 600, "<stdin>:1:402: YAML error: YAML nesting deeper than 400 levels"),
    ],
)
def test_bad_input_is_a_message_not_a_traceback(home: Path, content: bytes, message: str) -> None:
    result = runner.invoke(config_app, ["process", "-"], input=content)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == message
    assert "Traceback" not in result.output


def test_bad_options_exit_1(tmp_path: Path, home: Path) -> None:
    path = write(tmp_path, VALID)
    result = runner.invoke(config_app, ["process", str(path), "--pipeline-parameters", "{nope"])
    assert result.exit_code == 1
    assert result.output.startswith("error: --pipeline-parameters: invalid JSON")
    missing = runner.invoke(config_app, ["validate", str(tmp_path / "absent.yml")])
    assert missing.exit_code == 1
    assert missing.output == f"error: {tmp_path / 'absent.yml'}: no such file\n"


def test_ten_megabyte_config(tmp_path: Path, home: Path) -> None:
    padding = "".join(f"  - run: echo line {i} {'x' * 80}\n" for i in range(100_000))
    text = (
        "version: 2.1\njobs:\n  build:\n    docker: [{image: cimg/base:stable}]\n    steps:\n"
        + padding.replace("  - run", "      - run")
        + "workflows:\n  main:\n    jobs: [build]\n"
    )
    assert len(text) > 10_000_000
    path = write(tmp_path, text)
    result = runner.invoke(config_app, ["validate", str(path)])
    assert result.exit_code == 0


ORB_V1 = "version: 2.1\ncommands:\n  hi:\n    steps: [{run: echo v1}]\n"


def test_orb_import_list_and_use(tmp_path: Path, home: Path) -> None:
    source = tmp_path / "src" / "acme"
    source.mkdir(parents=True)
    (source / "greet@1.0.0.yml").write_text(ORB_V1)
    (source / "greet@1.1.0.yml").write_text(ORB_V1.replace("v1", "v1.1"))
    imported = runner.invoke(orb_app, ["import", str(tmp_path / "src")])
    assert imported.exit_code == 0, imported.output
    assert imported.output == "Imported acme/greet@1.0.0\nImported acme/greet@1.1.0\n"
    listed = runner.invoke(orb_app, ["list"])
    assert listed.output.splitlines() == [
        f"acme/greet@1.0.0\t{home / 'orbs' / 'acme' / 'greet@1.0.0.yml'}",
        f"acme/greet@1.1.0\t{home / 'orbs' / 'acme' / 'greet@1.1.0.yml'}",
    ]
    config = write(
        tmp_path,
        "version: 2.1\norbs: {g: acme/greet@1}\njobs:\n  build:\n    docker: [{image: x}]\n    steps: [g/hi]\n",
    )
    result = runner.invoke(config_app, ["process", str(config)])
    assert result.output.startswith("# Orb 'acme/greet@1' resolved to 'acme/greet@1.1.0'\n")
    assert "command: echo v1.1" in result.output


def test_orb_import_single_file_needs_a_name(tmp_path: Path, home: Path) -> None:
    packed = write(tmp_path, ORB_V1, "orb.yml")
    refused = runner.invoke(orb_app, ["import", str(packed)])
    assert refused.exit_code == 1
    assert "pass --as namespace/name@version" in refused.output
    accepted = runner.invoke(orb_app, ["import", str(packed), "--as", "me/solo@0.1.0"])
    assert accepted.output == "Imported me/solo@0.1.0\n"
    assert (home / "orbs" / "me" / "solo@0.1.0.yml").read_text() == ORB_V1


def test_missing_orb_says_how_to_import(tmp_path: Path, home: Path) -> None:
    config = write(
        tmp_path,
        "version: 2.1\norbs: {n: circleci/node@5}\njobs:\n  build:\n    docker: [{image: x}]\n    steps: [checkout]\n",
    )
    result = runner.invoke(config_app, ["validate", str(config)])
    assert result.exit_code == 1
    assert result.output == (
        f"{config}:2:8: orbs.n: unknown orb 'circleci/node@5' (looked in {home / 'orbs'}; no "
        "version of it is available); add it with 'circlet orb import <packed-orb.yml>' or pass "
        "--orb-dir\n"
    )


def test_orb_pack(tmp_path: Path) -> None:
    src = tmp_path / "orb" / "src"
    (src / "commands").mkdir(parents=True)
    (src / "scripts").mkdir()
    (src / "executors").mkdir()
    (src / "@orb.yml").write_text("version: 2.1\ndescription: demo\n")
    (src / "commands" / "greet.yml").write_text(
        "parameters:\n  to: {type: string, default: you}\nsteps:\n"
        "  - run:\n      environment: {TO: << parameters.to >>}\n"
        "      command: <<include(scripts/greet.sh)>>\n"
    )
    (src / "scripts" / "greet.sh").write_text('echo "hello $TO" # << not a template >>\n')
    (src / "executors" / "default.yml").write_text("docker: [{image: cimg/base:stable}]\n")
    (src / ".hidden.yml").write_text("ignored: true\n")
    result = runner.invoke(orb_app, ["pack", str(tmp_path / "orb")])
    assert result.exit_code == 0, result.output
    assert result.output == (
        "commands:\n  greet:\n    parameters:\n      to:\n        default: you\n"
        "        type: string\n    steps:\n    - run:\n        command: |\n"
        '          echo "hello $TO" # \\<< not a template >>\n'
        "        environment:\n          TO: << parameters.to >>\n"
        "description: demo\nexecutors:\n  default:\n    docker:\n    - image: cimg/base:stable\n"
        "version: 2.1\n"
    )


def _module(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "circlet.config", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_module_entry_point(tmp_path: Path) -> None:
    env = dict(os.environ, CIRCLET_HOME=str(tmp_path / "home"))
    config = write(tmp_path, VALID)
    processed = _module("config", "process", str(config), env=env)
    assert processed.returncode == 0, processed.stderr
    assert processed.stdout.startswith("version: 2\njobs:\n")
    invalid = _module("config", "validate", "-", stdin=INVALID, env=env)
    assert invalid.returncode == 1
    assert invalid.stderr.splitlines()[0] == (
        "<stdin>:7:9: jobs.build.steps[1]: unknown step 'rn' (did you mean 'run'?)"
    )
    listed = _module("orb", "list", env=env)
    assert listed.returncode == 0
    assert listed.stdout.startswith("No orbs found")

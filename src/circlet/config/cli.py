"""``circlet config ...`` and ``circlet orb ...`` commands.  No command prints a traceback: every
failure is a message and exit status 1."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from .compiled import CompiledConfig
from .compiler import compile_config
from .errors import ConfigError, ConfigInvalid, Location
from .orbs import OrbRegistry, default_orb_dirs, import_orbs, pack_orb
from .pipeline import fabricated_values
from .render import dump_yaml

config_app = typer.Typer(
    help="Validate and process .circleci/config.yml files.", no_args_is_help=True, add_completion=False
)
orb_app = typer.Typer(help="Manage the local orb registry.", no_args_is_help=True, add_completion=False)

DEFAULT_CONFIG = ".circleci/config.yml"

PathArgument = Annotated[str, typer.Argument(help="Config file ('-' reads standard input).")]
OrbDirOption = Annotated[
    list[Path] | None,
    typer.Option("--orb-dir", help="Extra directory of packed orbs (<namespace>/<name>@<version>.yml)."),
]
ParametersOption = Annotated[
    str | None, typer.Option("--pipeline-parameters", help="Pipeline parameters as JSON, or @FILE holding JSON.")
]
ValuesOption = Annotated[
    str | None,
    typer.Option("--pipeline-values", help='Pipeline values (e.g. {"git.branch": "main"}) as JSON or @FILE.'),
]


class UsageProblem(Exception):
    """A problem with the command's inputs (not the config itself)."""


def _fail(lines: list[str]) -> None:
    for line in lines:
        typer.echo(line, err=True)
    raise typer.Exit(1)


def _guarded(action: Callable[[], None]) -> None:
    """Run a command body, turning every failure into messages and exit status 1."""
    try:
        action()
    except typer.Exit:
        raise
    except ConfigInvalid as exc:
        _fail([e.format() for e in exc.errors])
    except UsageProblem as exc:
        _fail([f"error: {exc}"])
    except (OSError, ValueError) as exc:
        _fail([f"error: {exc}"])
    except RecursionError:
        _fail(["error: the input is nested too deeply to process"])
    except Exception as exc:  # noqa: BLE001 - the CLI must never show a traceback
        _fail([f"error: internal compiler error ({type(exc).__name__}: {exc})"])


def _read_source(path: str) -> tuple[str, str]:
    """(text, display name) of the config; '-' is standard input."""
    if path == "-":
        data = sys.stdin.buffer.read()
        name = "<stdin>"
    else:
        file = Path(path)
        if not file.is_file():
            raise UsageProblem(f"{path}: no such file")
        data = file.read_bytes()
        name = path
    try:
        return data.decode("utf-8"), name
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 text (byte {exc.start})"
        raise ConfigInvalid([ConfigError(message, "", Location(name, line, column))]) from None


def _json_option(value: str | None, option: str) -> dict[str, Any]:
    if value is None:
        return {}
    text = value
    if value.startswith("@"):
        text = Path(value[1:]).read_text(encoding="utf-8")
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageProblem(f"{option}: invalid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise UsageProblem(f"{option}: expected a JSON object")
    return parsed


def _compile(path: str, orb_dir: list[Path] | None, parameters: str | None, values: str | None) -> CompiledConfig:
    source, name = _read_source(path)
    pipeline_values = fabricated_values()
    pipeline_values.update(_json_option(values, "--pipeline-values"))
    return compile_config(
        source,
        filename=name,
        pipeline_parameters=_json_option(parameters, "--pipeline-parameters"),
        pipeline_values=pipeline_values,
        orb_dirs=default_orb_dirs() + list(orb_dir or []),
    )


@config_app.command("validate")
def validate(
    path: PathArgument = DEFAULT_CONFIG,
    orb_dir: OrbDirOption = None,
    pipeline_parameters: ParametersOption = None,
    pipeline_values: ValuesOption = None,
) -> None:
    """Check a config; print every error as file:line:column: path: message."""

    def action() -> None:
        compiled = _compile(path, orb_dir, pipeline_parameters, pipeline_values)
        for warning in compiled.warnings:
            typer.echo(f"warning: {warning.format()}", err=True)
        typer.echo(f"Config file at {path} is valid.")

    _guarded(action)


@config_app.command("process")
def process(
    path: PathArgument = DEFAULT_CONFIG,
    orb_dir: OrbDirOption = None,
    pipeline_parameters: ParametersOption = None,
    pipeline_values: ValuesOption = None,
) -> None:
    """Print the processed config (orbs, commands, executors, parameters and matrices expanded)."""

    def action() -> None:
        compiled = _compile(path, orb_dir, pipeline_parameters, pipeline_values)
        sys.stdout.write(compiled.to_yaml())

    _guarded(action)


def _home_registry() -> Path:
    return default_orb_dirs()[0]


@orb_app.command("import")
def import_command(
    source: Annotated[Path, typer.Argument(help="A packed orb file or a directory of them.")],
    as_ref: Annotated[
        str | None, typer.Option("--as", help="namespace/name@version for a single file not named that way.")
    ] = None,
) -> None:
    """Add packed orbs to the local registry ($CIRCLET_HOME/orbs)."""

    def action() -> None:
        for ref in import_orbs(source, _home_registry(), as_ref):
            typer.echo(f"Imported {ref}")

    _guarded(action)


@orb_app.command("pack")
def pack_command(
    source: Annotated[Path, typer.Argument(help="Orb source tree (the repository or its src/).")],
) -> None:
    """Pack an orb source tree into one YAML document (printed), as `circleci orb pack` does."""

    def action() -> None:
        if not source.is_dir():
            raise UsageProblem(f"{source} is not a directory")
        sys.stdout.write(dump_yaml(pack_orb(source)))

    _guarded(action)


@orb_app.command("list")
def list_command(orb_dir: OrbDirOption = None) -> None:
    """List the orbs in the local registry."""

    def action() -> None:
        registry = OrbRegistry(default_orb_dirs() + list(orb_dir or []))
        orbs = registry.all_orbs()
        if not orbs:
            dirs = os.pathsep.join(str(r) for r in registry.roots)
            typer.echo(f"No orbs found (looked in {dirs}).")
            return
        for ref, path in orbs:
            typer.echo(f"{ref}\t{path}")

    _guarded(action)

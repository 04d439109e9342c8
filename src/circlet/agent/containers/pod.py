"""The containers of one ``docker`` task, as CircleCI's docker executor has them: the first image
(the primary) runs the steps, the others run as services, and all share one network namespace, so
a service answers on ``localhost`` (and on its ``name``, mapped to 127.0.0.1).

With podman they are one pod. With docker the primary is started first and the services join its
network namespace (``--network container:PRIMARY``). The primary's own entrypoint and command are
not run: a keep-alive shell holds the container up and each step is an ``exec`` into it. The task
directory is bind-mounted at the same absolute path, so the steps the agent runs on the host
(checkout, caches, workspaces, artifacts, test results) and the steps run in the container see the
same files at the same paths."""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import signal
import sys
import sysconfig
import tempfile
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import circlet
from circlet.agent.containers.engine import ContainerEngine, EngineResult
from circlet.agent.containers.leftovers import AGENT_LABEL, this_agent

PULL_SECONDS = 15 * 60.0
KEEP_ALIVE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
"""The primary's process 1: it only keeps the container up, and stops at once when asked."""
STEP_WRAPPER = 'echo "$$" > "$1"; eval "$(cat)"; shift; exec "$@" </dev/null'
"""Run in the primary by ``exec``: record the step's process id (an ``exec`` session is a new
session, so it is also the process group to kill), take the step's environment from the input (so
secret values are in no file and on no command line), run the shell."""
KILL_GROUP = 'kill -s "$1" -- "-$2" 2>/dev/null || kill -s "$1" "$2" 2>/dev/null; exit 0'
PROBE = (
    'printf "path=%s\\n" "$PATH"; printf "bash=%s\\n" "$(command -v bash)"; '
    "(set -o pipefail) 2>/dev/null && echo pipefail=yes; exit 0"
)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SHELL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VARIABLE = re.compile(r"^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$")


class ContainerConfigError(ValueError):
    """The executor's ``docker`` list cannot be run as given."""


@dataclass(frozen=True)
class ContainerSpec:
    """One entry of the executor's ``docker`` list."""

    image: str
    name: str | None = None
    entrypoint: tuple[str, ...] = ()
    command: tuple[str, ...] = ()
    user: str | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None
    """(username, password) for pulling the image."""

    @classmethod
    def from_config(cls, entry: object, variables: Mapping[str, str]) -> ContainerSpec:
        if not isinstance(entry, dict) or not isinstance(entry.get("image"), str) or not entry["image"].strip():
            raise ContainerConfigError("every entry of the executor's docker list needs an image")
        auth = entry.get("auth")
        credentials = None
        if isinstance(auth, dict) and auth.get("username") and auth.get("password"):
            credentials = (expand(str(auth["username"]), variables), expand(str(auth["password"]), variables))
        user = entry.get("user")
        return cls(
            image=entry["image"].strip(),
            name=str(entry["name"]) if entry.get("name") else None,
            entrypoint=words(entry.get("entrypoint")),
            command=words(entry.get("command")),
            user=str(user) if user not in (None, "") else None,
            environment={str(k): "" if v is None else str(v) for k, v in (entry.get("environment") or {}).items()},
            auth=credentials,
        )


def expand(value: str, variables: Mapping[str, str]) -> str:
    """``$NAME`` or ``${NAME}`` as a whole value is the project or context variable (CircleCI's way
    of keeping registry passwords out of config files)."""
    match = VARIABLE.match(value.strip())
    return variables.get(match.group(1), "") if match else value


def words(value: object) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(word) for word in value)
    return tuple(shlex.split(str(value)))


def registry_of(image: str) -> str | None:
    """The registry an image reference names, if it names one (``ghcr.io/a/b``, ``localhost:5000/b``)."""
    first, _, rest = image.partition("/")
    return first if rest and ("." in first or ":" in first or first == "localhost") else None


def qualified(image: str) -> str:
    """A short name as Docker Hub's, as CircleCI and docker read it (``redis`` is
    ``docker.io/library/redis``); podman would otherwise ask its registries.conf."""
    if registry_of(image):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def container_specs(raw_executor: Mapping[str, Any], variables: Mapping[str, str]) -> list[ContainerSpec]:
    entries = raw_executor.get("docker")
    if not isinstance(entries, list) or not entries:
        raise ContainerConfigError("the executor names no docker image")
    return [ContainerSpec.from_config(entry, variables) for entry in entries]


@dataclass(frozen=True)
class PrimaryShell:
    """What the primary image offers: its ``PATH`` and the default shell of ``run`` steps there."""

    path: str
    shell: tuple[str, ...]
    sources_bash_env: bool


def environment_script(environment: Mapping[str, str]) -> bytes:
    """``export NAME='value'`` lines for the step wrapper (names a shell cannot export are left out)."""
    lines = [f"export {name}={shlex.quote(value)}\n" for name, value in environment.items() if SHELL_NAME.match(name)]
    return "".join(lines).encode()


RLIMIT_HINT = (
    " (this host does not let the engine set its default ulimits: give the runner a containers.conf"
    " with `[containers]` `default_ulimits = []` through --containers-conf or CIRCLET_RUNNER_CONTAINERS_CONF)"
)


def environment_args(environment: Mapping[str, str], env_file: Path) -> list[str]:
    """A service container's ``environment`` as engine arguments: in a private ``--env-file`` (mode
    0600, removed once the container is created), not on the engine's command line, where ``ps`` on
    the runner host would show every value. The file holds one ``NAME=value`` a line, read literally
    by docker and podman alike; a name that is not a shell name, or a value with a line break (or that
    starts with a quote, which newer env-file readers may unquote), goes on the command line (``--env``)."""
    lines: list[str] = []
    args: list[str] = []
    for name, value in environment.items():
        if SHELL_NAME.match(name) and "\n" not in value and "\r" not in value and value[:1] not in ("'", '"'):
            lines.append(f"{name}={value}\n")
        else:
            args += ["--env", f"{name}={value}"]
    if not lines:
        return args
    descriptor = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.writelines(lines)
    return ["--env-file", str(env_file), *args]


def with_hint(engine_error: str) -> str:
    """The engine's error, with what to do about the one a sandboxed host gives for every container."""
    return engine_error + RLIMIT_HINT if "setting rlimit" in engine_error else engine_error


def agent_python_mounts() -> list[Path]:
    """Directories to mount read-only, at the same paths, so the job's ``circleci`` helpers (which
    run the agent's interpreter) work in the container: the venv, the interpreter's own prefix and
    where ``circlet`` is; nothing under /usr (that would hide the image's own files)."""
    candidates = [Path(sys.prefix), Path(sys.base_prefix), Path(circlet.__file__).resolve().parent.parent]
    candidates.append(Path(sysconfig.get_paths()["purelib"]))
    mounts: list[Path] = []
    for path in candidates:
        path = path.resolve()
        if (
            path == Path("/")
            or path.is_relative_to("/usr")
            or not path.is_dir()
            or any(path.is_relative_to(m) for m in mounts)
        ):
            continue
        mounts = [m for m in mounts if not m.is_relative_to(path)] + [path]
    return mounts


class TaskContainers:
    """Creates, uses and removes the containers of one task."""

    def __init__(
        self,
        engine: ContainerEngine,
        task_id: str,
        task_root: Path,
        specs: Sequence[ContainerSpec],
        *,
        read_only_mounts: Sequence[Path] = (),
    ) -> None:
        self.engine = engine
        self.specs = list(specs)
        self.task_root = task_root
        self.read_only_mounts = list(read_only_mounts)
        self.prefix = f"circlet-{task_id}"
        self.primary = f"{self.prefix}-primary"
        owner = this_agent()
        # The owner lets a later agent remove what this one leaves if it is killed (leftovers.py).
        self.labels = ["--label", f"circlet.task={task_id}"] + (
            ["--label", f"{AGENT_LABEL}={owner}"] if owner is not None else []
        )
        self.use_pod = engine.kind == "podman"
        self._created: list[str] = []
        self._pod_created = False
        self.shell = PrimaryShell(DEFAULT_PATH, ("/bin/sh", "-e"), True)
        self.ownership_stale = False
        """Set when the agent may have written files (as itself) into the task directory since the
        primary's ``user`` last got them."""

    @property
    def user(self) -> str | None:
        return self.specs[0].user

    async def start(self, note: Callable[[str], Awaitable[None]]) -> str | None:
        """Make every image present, start the services and the primary. None, or why not."""
        for spec in self.specs:
            problem = await self._ensure_image(spec, note)
            if problem is not None:
                return problem
        hosts = [arg for spec in self.specs[1:] if spec.name for arg in ("--add-host", f"{spec.name}:127.0.0.1")]
        if self.use_pod:
            self._pod_created = True
            created = await self.engine.call("pod", "create", "--name", self.prefix, *self.labels, *hosts)
            if not created.ok:
                return f"could not create the pod of the job's containers: {created.last_line()}"
            for index, spec in enumerate(self.specs[1:], start=1):
                problem = await self._start_service(index, spec, ["--pod", self.prefix])
                if problem is not None:
                    return problem
            problem = await self._start_primary(["--pod", self.prefix])
        else:
            problem = await self._start_primary(hosts)
            for index, spec in enumerate(self.specs[1:], start=1):
                if problem is not None:
                    break
                problem = await self._start_service(index, spec, ["--network", f"container:{self.primary}"])
        if problem is not None:
            return problem
        await note(f"circlet runner: started {self._describe()}")
        self.shell = await self._probe_shell()
        if self.user is not None:
            self.ownership_stale = True
        return None

    def _describe(self) -> str:
        services = ", ".join(spec.image + (f" (as {spec.name})" if spec.name else "") for spec in self.specs[1:])
        primary = f"primary container {self.specs[0].image}"
        return f"{primary} with service containers {services}" if services else primary

    async def _ensure_image(self, spec: ContainerSpec, note: Callable[[str], Awaitable[None]]) -> str | None:
        """A local image is used as it is; only a missing one is pulled."""
        exists = (
            await self.engine.call("image", "exists", spec.image)
            if self.engine.kind == "podman"
            else await self.engine.call("image", "inspect", "--format", "{{.Id}}", spec.image)
        )
        if exists.ok:
            return None
        await note(f"circlet runner: image {spec.image} is not present here; pulling it")
        reference = spec.image if self.engine.kind == "docker" else qualified(spec.image)
        with tempfile.TemporaryDirectory(prefix="circlet-auth-") as auth_dir:
            args = ["pull", reference] if spec.auth is None else self._pull_with_auth(spec, reference, Path(auth_dir))
            pulled = await self.engine.call(*args, timeout=PULL_SECONDS)
        if not pulled.ok:
            return f"the image {spec.image} is not present on this runner and could not be pulled: {pulled.last_line()}"
        return None

    def _pull_with_auth(self, spec: ContainerSpec, reference: str, directory: Path) -> list[str]:
        """Credentials in a private file, never on a command line (``ps`` would show them)."""
        assert spec.auth is not None
        token = base64.b64encode(f"{spec.auth[0]}:{spec.auth[1]}".encode()).decode()
        registry = registry_of(spec.image)
        keys = [registry] if registry else ["docker.io", "https://index.docker.io/v1/"]
        config = json.dumps({"auths": {key: {"auth": token} for key in keys}})
        path = directory / ("auth.json" if self.engine.kind == "podman" else "config.json")
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(config)
        if self.engine.kind == "podman":
            return ["pull", "--authfile", str(path), reference]
        return ["--config", str(directory), "pull", reference]

    async def _start_service(self, index: int, spec: ContainerSpec, network: list[str]) -> str | None:
        name = f"{self.prefix}-{index}"
        args = ["run", "-d", "--name", name, *self.labels, *network]
        if spec.user:
            args += ["--user", spec.user]
        command = list(spec.command)
        if spec.entrypoint:
            args += ["--entrypoint", spec.entrypoint[0]]
            command = [*spec.entrypoint[1:], *command]
        self._created.append(name)  # before: a start canceled half-way may have created it
        with tempfile.TemporaryDirectory(prefix="circlet-env-") as private:
            args += environment_args(spec.environment, Path(private) / "service.env")
            started = await self.engine.call(*args, spec.image, *command)
        if not started.ok:
            return f"the service container {spec.image} did not start: {with_hint(started.last_line())}"
        return None

    async def _start_primary(self, network: list[str]) -> str | None:
        root = str(self.task_root)
        args = ["run", "-d", "--name", self.primary, *self.labels, *network, "-v", f"{root}:{root}"]
        for path in self.read_only_mounts:
            args += ["-v", f"{path}:{path}:ro"]
        self._created.append(self.primary)
        started = await self.engine.call(*args, "--entrypoint", "/bin/sh", self.specs[0].image, "-c", KEEP_ALIVE)
        if not started.ok:
            return f"the primary container {self.specs[0].image} did not start: {with_hint(started.last_line())}"
        return None

    async def _probe_shell(self) -> PrimaryShell:
        answer = await self.engine.call("exec", self.primary, "/bin/sh", "-c", PROBE)
        found = dict(line.split("=", 1) for line in answer.output.splitlines() if "=" in line)
        path = found.get("path") or self.shell.path
        bash = found.get("bash", "")
        if bash:
            return PrimaryShell(path, (bash, "-eo", "pipefail"), False)
        pipefail = found.get("pipefail") == "yes"
        return PrimaryShell(path, ("/bin/sh", "-eo", "pipefail") if pipefail else ("/bin/sh", "-e"), True)

    def exec_argv(self, pid_file: Path, workdir: Path, argv: Sequence[str]) -> list[str]:
        """The host command that runs ``argv`` in the primary, as its ``user``, in ``workdir``; its
        input must be the step's environment (``environment_script``)."""
        user = ["--user", self.user] if self.user else []
        return self.engine.argv(
            "exec", "-i", *user, "--workdir", str(workdir), self.primary,
            "/bin/sh", "-c", STEP_WRAPPER, "sh", str(pid_file), *argv,
        )  # fmt: skip

    async def signal_step(self, pid_file: Path, signum: signal.Signals) -> None:
        """Signal a step's process group inside the primary: killing the host's ``exec`` client
        would leave the step running in the container."""
        try:
            pid = int(pid_file.read_text().strip())
        except (OSError, ValueError):
            return  # not started in the container yet; the host side is signalled after the grace
        await self.engine.call(
            "exec",
            "--user",
            "0",
            self.primary,
            "/bin/sh",
            "-c",
            KILL_GROUP,
            "sh",
            signum.name.removeprefix("SIG"),
            str(pid),
        )

    async def give_files_to_user(self) -> EngineResult | None:
        """The primary's ``user`` owns the task directory: the agent writes it as itself (checkout,
        caches, workspaces), and a step running as that user must be able to change those files."""
        if self.user is None or not self.ownership_stale:
            return None
        self.ownership_stale = False
        owner = self.user if ":" in self.user or self.user.isdigit() else f"{self.user}:"
        return await self._chown(owner)

    async def _chown(self, owner: str) -> EngineResult:
        return await self.engine.call(
            "exec", "--user", "0", self.primary, "chown", "-R", "-h", owner, str(self.task_root)
        )

    async def remove(self) -> None:
        """Stop and remove every container (and the pod), first handing back to the agent what a
        container's users made in the task directory when the agent could not remove it itself."""
        if self.primary in self._created and os.geteuid() != 0:
            await self._chown("0:0" if self.engine.rootless else f"{os.getuid()}:{os.getgid()}")
        if self._pod_created:
            await self.engine.call("pod", "rm", "--force", "--ignore", "--time", "1", self.prefix)
        elif self._created:
            # Services first: the primary holds the network namespace they joined.
            services = [name for name in self._created if name != self.primary]
            if services:
                await self.engine.call("rm", "--force", *services)
            if self.primary in self._created:
                await self.engine.call("rm", "--force", self.primary)
        self._created.clear()
        self._pod_created = False

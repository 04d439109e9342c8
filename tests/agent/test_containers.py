"""docker jobs in real containers (podman): the primary runs the steps, services answer on
localhost, the executor's keys are honoured, and a cancel or a timeout kills what runs inside the
container and leaves no container behind. The image is built locally (``scripts/test-image``):
nothing is pulled from a registry."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from circlet.agent.containers import (
    ContainerConfigError,
    ContainerEngine,
    ContainerSpec,
    TaskContainers,
    container_specs,
    detect_engine,
    environment_script,
    remove_leftovers,
)
from circlet.agent.containers.engine import COMMAND_SECONDS, EngineResult, probe
from circlet.agent.containers.leftovers import AGENT_LABEL, Owner, alive, this_agent
from circlet.agent.containers.pod import environment_args, qualified, with_hint
from circlet.agent.executor import TaskRunner
from circlet.agent.protocol import Task
from tests.agent.conftest import MemorySink, Run, make_task, run_step

ROOT = Path(__file__).resolve().parents[2]
TEST_IMAGE = "circlet-test/bookworm:latest"
CONTAINERS_CONF = (
    "[containers]\n# This machine kind cannot raise the open-files limit podman asks for.\ndefault_ulimits = []\n"
)


def echo_server(port: int, reply: str) -> str:
    """A shell command serving ``reply`` (shell-expanded at start) to every connection on
    ``port``, with the Perl every Debian image has; it ends at once on SIGTERM."""
    script = (
        f'$s = IO::Socket::INET->new(LocalAddr => "127.0.0.1:{port}", Listen => 5, ReuseAddr => 1) or die;'
        ' $SIG{TERM} = sub { exit 0 }; while ($c = $s->accept) { print $c "$ENV{REPLY}\\n"; close $c }'
    )
    return f"REPLY=\"{reply}\" exec perl -MIO::Socket::INET -e '{script}'"


def connect(host: str, port: int) -> str:
    """A step command printing what ``host:port`` answers (bash's /dev/tcp), retried while the
    service starts."""
    return f"for i in $(seq 50); do exec 3<>/dev/tcp/{host}/{port} && break; sleep 0.1; done 2>/dev/null\ncat <&3\n"


@functools.cache
def podman_engine() -> ContainerEngine | str:
    """podman with the test image, or why the container tests cannot run here."""
    if shutil.which("podman") is None:
        return "podman is not installed (.ci/run installs it: apt-get install podman runc debootstrap)"
    conf = Path(tempfile.mkdtemp(prefix="circlet-containers-")) / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    built = subprocess.run(
        [str(ROOT / "scripts" / "test-image")],
        env={**os.environ, "CONTAINERS_CONF": str(conf)},
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if built.returncode != 0:
        return f"the test image {TEST_IMAGE} could not be built: {(built.stderr or built.stdout).strip()[-500:]}"
    engine = asyncio.run(detect_engine("podman", (), conf))
    return engine if engine is not None else "podman does not answer `podman info`"


def require_podman() -> ContainerEngine:
    engine = podman_engine()
    if isinstance(engine, str):
        pytest.skip(engine)
    return engine


def podman_conf(engine: ContainerEngine) -> str:
    return engine.environment["CONTAINERS_CONF"]


def containers_of(engine: ContainerEngine, task_id: str) -> list[str]:
    """Names of the containers (and pods) of a task that still exist."""
    env = dict(engine.environment)
    names = subprocess.run(
        ["podman", "ps", "-a", "--filter", f"label=circlet.task={task_id}", "--format", "{{.Names}}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    pods = subprocess.run(
        ["podman", "pod", "ps", "--filter", f"label=circlet.task={task_id}", "--format", "{{.Name}}"],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return names + pods


def docker_task(steps: list[dict[str, Any]], images: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    executor = {"type": "docker", "image": images[0]["image"], "working_directory": "~/project"}
    return make_task(steps, executor={**executor, "raw": {"docker": images}}, **overrides)


async def execute_in(engine: ContainerEngine, payload: dict[str, Any], work_root: Path, **options: Any) -> Run:
    sink = MemorySink()
    runner = TaskRunner(Task.from_json(payload), sink, work_root=work_root, engine=engine, kill_grace=2.0, **options)
    return Run(await runner.run(), sink)


@pytest.fixture
def engine() -> ContainerEngine:
    return require_podman()


async def test_steps_run_in_the_primary_and_reach_a_service_on_localhost(
    engine: ContainerEngine, work_root: Path
) -> None:
    service = {
        "image": TEST_IMAGE,
        "name": "greeter",
        "entrypoint": ["/bin/sh", "-c"],
        "command": [echo_server(7001, "hello from $(id -un) with $GREETING")],
        "user": "nobody",
        "environment": {"GREETING": "service-env"},
    }
    primary = {"image": TEST_IMAGE, "environment": {"FROM_PRIMARY": "primary-env"}}
    payload = docker_task(
        [
            run_step(
                'echo "debian $(cat /etc/debian_version) home=$HOME pwd=$PWD"\n'
                'echo "$FROM_PRIMARY $JOB_VAR $STEP_VAR token=$DEPLOY_TOKEN"\n'
                "echo 'export CARRIED=yes' >> \"$BASH_ENV\"",
                name="where",
                environment={"STEP_VAR": "step-env"},
            ),
            run_step(connect("localhost", 7001), name="localhost"),
            run_step(connect("greeter", 7001), name="by name"),
            run_step(
                'echo "carried=$CARRIED cwd=$(pwd)"\n'
                'printf "a\\nb\\nc\\nd\\n" | circleci tests split --index 1 --total 2',
                name="helpers",
                working_directory="sub",
            ),
        ],
        [primary, service],
        environment={"CI": "true", "JOB_VAR": "job-env", "DEPLOY_TOKEN": "s3cr3t-token"},
        secrets=["s3cr3t-token"],
    )
    task_root = work_root / f"task-{payload['task_id']}"
    run = await execute_in(engine, payload, work_root)

    assert run.result.status == "success", (run.result, dict(run.sink.outputs))
    assert run.sink.output(0) == (
        f"circlet runner: started primary container {TEST_IMAGE} with service containers {TEST_IMAGE} (as greeter)\n"
        f"debian 12.{run.sink.output(0).split('debian 12.')[1].split()[0]} "
        f"home={task_root}/home pwd={task_root}/home/project\n"
        "primary-env job-env step-env token=********\n"
    )
    assert run.sink.output(1) == "hello from nobody with service-env\n"
    assert run.sink.output(2) == "hello from nobody with service-env\n"
    assert run.sink.output(3) == f"carried=yes cwd={task_root}/home/project/sub\nb\nd\n"
    assert containers_of(engine, payload["task_id"]) == []
    assert not task_root.exists()


class RecordingEngine(ContainerEngine):
    """The real engine, remembering the argument lists it was called with and the env-files they named
    (read while they exist)."""

    calls: list[tuple[str, ...]]
    env_files: list[str]

    async def call(
        self, *args: str, timeout: float | None = COMMAND_SECONDS, stdin: bytes | None = None
    ) -> EngineResult:
        self.calls.append(args)
        if "--env-file" in args:
            self.env_files.append(Path(args[args.index("--env-file") + 1]).read_text())
        return await super().call(*args, timeout=timeout, stdin=stdin)


async def test_a_service_environment_reaches_it_literally_and_off_the_command_line(
    engine: ContainerEngine, work_root: Path
) -> None:
    secret = "service-pa55word-value"
    tricky = "a b=c #d $HOME `x` 'q' é"
    service = {
        "image": TEST_IMAGE,
        "name": "envy",
        "entrypoint": ["/bin/sh", "-c"],
        "command": [echo_server(7002, "$SERVICE_PASSWORD|$TRICKY|$QUOTED|$MULTI")],
        "environment": {"SERVICE_PASSWORD": secret, "TRICKY": tricky, "QUOTED": '"kept"', "MULTI": "one\ntwo"},
    }
    recording = RecordingEngine(engine.kind, engine.command, engine.environment, engine.rootless)
    object.__setattr__(recording, "calls", [])
    object.__setattr__(recording, "env_files", [])
    payload = docker_task([run_step(connect("localhost", 7002), name="ask")], [{"image": TEST_IMAGE}, service])
    run = await execute_in(recording, payload, work_root)

    assert run.result.status == "success", (run.result, dict(run.sink.outputs))
    assert run.sink.output(0).endswith(f'{secret}|{tricky}|"kept"|one\ntwo\n')
    assert not any(secret in arg or tricky in arg for call in recording.calls for arg in call)
    assert recording.env_files == [f"SERVICE_PASSWORD={secret}\nTRICKY={tricky}\n"]
    assert containers_of(engine, payload["task_id"]) == []


async def test_user_gets_the_checkout_and_the_files_come_back(
    engine: ContainerEngine, work_root: Path, repo: Any
) -> None:
    payload = docker_task(
        [
            {"type": "checkout", "name": "Checkout code"},
            run_step('id -un; cat README; echo made > made.txt; ls -ln made.txt | cut -d" " -f3', name="as nobody"),
        ],
        [{"image": TEST_IMAGE, "user": "nobody"}],
        checkout={"url": str(repo.path), "revision": repo.second, "branch": "main"},
    )
    run = await execute_in(engine, payload, work_root)
    assert run.result.status == "success", (run.result, dict(run.sink.outputs))
    assert run.sink.output(1) == "nobody\ntwo\n65534\n"
    assert not (work_root / f"task-{payload['task_id']}").exists()


async def test_cancel_kills_the_step_inside_the_container_and_removes_it(
    engine: ContainerEngine, work_root: Path
) -> None:
    payload = docker_task(
        [run_step("echo started; sleep 300", name="sleeper"), run_step("echo never", name="after")],
        [
            {"image": TEST_IMAGE},
            {"image": TEST_IMAGE, "entrypoint": "/bin/sh", "command": ["-c", echo_server(7002, "x")]},
        ],
    )
    sink = MemorySink()
    runner = TaskRunner(Task.from_json(payload), sink, work_root=work_root, engine=engine, kill_grace=2.0)
    execution = asyncio.create_task(runner.run())
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while b"started" not in sink.outputs[0]:
        assert loop.time() < deadline and not execution.done(), dict(sink.outputs)
        await asyncio.sleep(0.05)
    started = loop.time()
    runner.stop("canceled", "canceled")
    result = await execution
    assert (result.status, result.message) == ("canceled", "canceled")
    assert sink.final() == {0: ("canceled", None)}
    assert loop.time() - started < 10  # the sleep did not hold the job to its grace period and beyond
    assert containers_of(engine, payload["task_id"]) == []


async def test_no_output_timeout_kills_the_step_inside_the_container(engine: ContainerEngine, work_root: Path) -> None:
    find_sleeper = (
        "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline 2>/dev/null; echo; done | grep -c '^sleep 30 $' || true"
    )
    payload = docker_task(
        [
            run_step("echo quiet now; sleep 30", name="quiet", no_output_timeout="1s"),
            run_step(find_sleeper, name="still there?", when="always"),
        ],
        [{"image": TEST_IMAGE}],
    )
    run = await execute_in(engine, payload, work_root)
    assert run.result.status == "timedout"
    assert run.sink.output(0) == (
        f"circlet runner: started primary container {TEST_IMAGE}\nquiet now\n\nToo long with no output (exceeded 1s)\n"
    )
    assert run.sink.final() == {0: ("timedout", None), 1: ("success", 0)}
    assert run.sink.output(1) == "0\n"


async def test_an_image_that_is_missing_fails_the_job_clearly(engine: ContainerEngine, work_root: Path) -> None:
    image = "localhost:1/circlet-test/missing:none"
    payload = docker_task(
        [run_step("echo never")],
        [{"image": image, "auth": {"username": "robot", "password": "$REGISTRY_PASSWORD"}}],
        environment={"REGISTRY_PASSWORD": "registry-pa55word"},
    )
    run = await execute_in(engine, payload, work_root)
    assert run.result.status == "failed"
    assert run.result.message is not None
    assert run.result.message.startswith(
        f"the image {image} is not present on this runner and could not be pulled: "
    ), run.result.message
    assert "registry-pa55word" not in run.result.message
    assert run.sink.events == []
    assert containers_of(engine, payload["task_id"]) == []


async def test_docker_style_network_sharing(engine: ContainerEngine, work_root: Path) -> None:
    """The docker CLI's way (no pods: services join the primary's network namespace), driven through
    podman, which takes the same arguments."""
    as_docker = ContainerEngine("docker", engine.command, engine.environment, engine.rootless)
    service = {"image": TEST_IMAGE, "name": "db", "entrypoint": "/bin/sh", "command": ["-c", echo_server(7003, "db")]}
    payload = docker_task(
        [run_step(connect("localhost", 7003) + connect("db", 7003), name="both")], [{"image": TEST_IMAGE}, service]
    )
    run = await execute_in(as_docker, payload, work_root)
    assert run.result.status == "success", (run.result, dict(run.sink.outputs))
    assert run.sink.output(0).endswith("db\ndb\n")
    assert containers_of(engine, payload["task_id"]) == []


# -- without an engine: the executor's config as read, the environment as handed over ------------


def test_container_specs_from_the_compiled_executor() -> None:
    raw = {
        "docker": [
            {"image": "acme/app:1", "user": 1000, "auth": {"username": "robot", "password": "${REGISTRY_PASSWORD}"}},
            {"image": "redis", "name": "cache", "entrypoint": "/bin/sh -c", "command": "redis-server --port 7000"},
            {"image": "pg", "command": ["postgres", "-c", "fsync=off"], "environment": {"POSTGRES_PASSWORD": 1}},
        ]
    }
    primary, cache, postgres = container_specs(raw, {"REGISTRY_PASSWORD": "pa55"})
    assert (primary.user, primary.auth) == ("1000", ("robot", "pa55"))
    assert (cache.name, cache.entrypoint, cache.command) == (
        "cache",
        ("/bin/sh", "-c"),
        ("redis-server", "--port", "7000"),
    )
    assert (postgres.command, dict(postgres.environment)) == (
        ("postgres", "-c", "fsync=off"),
        {"POSTGRES_PASSWORD": "1"},
    )
    assert [qualified(image) for image in ("redis", "cimg/base:2024.01", "ghcr.io/a/b", "localhost:5000/x")] == [
        "docker.io/library/redis",
        "docker.io/cimg/base:2024.01",
        "ghcr.io/a/b",
        "localhost:5000/x",
    ]
    with pytest.raises(ContainerConfigError):
        container_specs({"machine": True}, {})
    with pytest.raises(ContainerConfigError):
        container_specs({"docker": [{"name": "no image"}]}, {})


def test_environment_args_write_a_private_file_and_keep_the_rest_on_the_command_line(tmp_path: Path) -> None:
    env_file = tmp_path / "service.env"
    args = environment_args(
        {"PASSWORD": "p a=s s", "LINES": "a\nb", "NOT-A-NAME": "x", "QUOTED": "'q'", "EMPTY": ""}, env_file
    )
    assert args == ["--env-file", str(env_file), "--env", "LINES=a\nb", "--env", "NOT-A-NAME=x", "--env", "QUOTED='q'"]
    assert env_file.read_text() == "PASSWORD=p a=s s\nEMPTY=\n"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert environment_args({"ODD-NAME": "v"}, tmp_path / "unused.env") == ["--env", "ODD-NAME=v"]
    assert not (tmp_path / "unused.env").exists()


def test_environment_script_keeps_any_value_and_drops_unexportable_names() -> None:
    environment = {"KEY": "line one\nit's $HOME `x`", "EMPTY": "", "NOT-A-NAME": "x"}
    script = environment_script(environment).decode()
    shown = subprocess.run(
        ["sh", "-c", 'eval "$(cat)"; printf "%s|%s" "$KEY" "${EMPTY-unset}"'],
        input=script, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert shown == "line one\nit's $HOME `x`|"
    assert "NOT-A-NAME" not in script


async def test_no_engine_when_told_none_or_when_none_answers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await detect_engine("none") is None
    monkeypatch.setenv("PATH", str(tmp_path))  # neither podman nor docker there
    assert await probe("podman", (), None) == "there is no podman command on the PATH"
    assert await detect_engine("auto") is None
    assert await detect_engine("docker") is None


def test_the_runner_refuses_an_unknown_engine() -> None:
    command = [sys.executable, "-m", "circlet.agent", "--url", "http://127.0.0.1:9", "--token", "t"]
    done = subprocess.run(
        [*command, "--container-engine", "lxc"], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 2
    assert '"--container-engine must be one of auto, podman, docker, none"' in done.stderr


def test_the_rlimit_error_of_a_sandboxed_host_says_what_to_do() -> None:
    error = "Error: runc: runc create failed: error setting rlimits for ready process: operation not permitted"
    assert "default_ulimits = []" in with_hint(error)
    assert with_hint("Error: no such image") == "Error: no such image"


# -- what agents killed mid-job left behind -------------------------------------------------------

NO_PID = 2**22 + 1
"""Above the largest ``pid_max`` a kernel allows: no process has it."""


def test_an_owner_is_alive_while_its_process_runs_here_and_in_doubt() -> None:
    me = this_agent()
    assert me is not None
    assert Owner.parse(str(me)) == me
    assert alive(me, me)
    assert not alive(replace(me, pid=NO_PID), me)
    assert not alive(replace(me, started=str(int(me.started) + 1)), me)  # its id now another process's
    assert not alive(replace(me, boot="an-earlier-boot"), me)  # the host restarted since
    assert alive(replace(me, place="another-host:1", pid=NO_PID), me)  # its id means nothing here
    assert [Owner.parse(text) for text in ("by-hand", "h:1/boot/x/7", "h:1/boot/0/7")] == [None, None, None]
    labels = TaskContainers(ContainerEngine("podman", ("podman",)), "t1", Path("/t"), [ContainerSpec("i")]).labels
    assert labels == ["--label", "circlet.task=t1", "--label", f"{AGENT_LABEL}={me}"]


async def test_an_agent_removes_what_dead_agents_left_and_nothing_else(
    engine: ContainerEngine, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead agent's pod, a docker-style primary and service of an agent whose process id another
    process now has, and a live agent's container (this test's own process, as an agent would be)."""
    prefix = f"circlet-sweep-{uuid.uuid4().hex[:8]}"
    # A place of its own: another agent starting meanwhile (the end-to-end tests') leaves these alone.
    real = this_agent()
    assert real is not None
    me = replace(real, place=f"{real.place}-{prefix}")
    monkeypatch.setattr("circlet.agent.containers.leftovers.this_agent", lambda: me)
    env = dict(engine.environment)

    def podman(*args: str) -> None:
        subprocess.run(["podman", *args], env=env, capture_output=True, text=True, check=True, timeout=120)

    def owned(owner: Owner) -> list[str]:
        return ["--label", f"{AGENT_LABEL}={owner}"]

    def existing() -> set[str]:
        listed = [
            subprocess.run(["podman", *ps, "--format", template], env=env, capture_output=True, text=True, check=True)
            for ps, template in ((["ps", "-a"], "{{.Names}}"), (["pod", "ps"], "{{.Name}}"))
        ]
        return {name for done in listed for name in done.stdout.split() if name.startswith(prefix)}

    gone, reused = replace(me, pid=NO_PID), replace(me, started=str(int(me.started) + 1))
    keep_alive = ["--entrypoint", "/bin/sh", TEST_IMAGE, "-c", "trap 'exit 0' TERM; sleep 300 & wait"]
    try:
        podman("pod", "create", "--name", f"{prefix}-gone", *owned(gone))
        podman("run", "-d", "--name", f"{prefix}-gone-primary", "--pod", f"{prefix}-gone", *owned(gone), *keep_alive)
        podman("run", "-d", "--name", f"{prefix}-reused-primary", *owned(reused), *keep_alive)
        network = ["--network", f"container:{prefix}-reused-primary"]
        podman("run", "-d", "--name", f"{prefix}-reused-1", *network, *owned(reused), *keep_alive)
        podman("run", "-d", "--name", f"{prefix}-live-primary", *owned(me), *keep_alive)

        with caplog.at_level(logging.INFO, logger="circlet.agent"):
            await remove_leftovers(engine)

        assert existing() == {f"{prefix}-live-primary"}
        [line] = [record for record in caplog.records if record.message.startswith("leftover containers")]
        assert line.message == "leftover containers of dead agents removed", line.__dict__
    finally:
        podman("pod", "rm", "--force", "--ignore", "--time", "0", f"{prefix}-gone")
        for name in (f"{prefix}-reused-1", f"{prefix}-reused-primary", f"{prefix}-live-primary"):
            podman("rm", "--force", "--ignore", "--time", "0", name)

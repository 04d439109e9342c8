"""The executor's one interface to where job code runs (agent/backends/): the choice between the
host and containers for every kind of job and runner, the executor's use of a backend (through the
test double), and the double and the real backends held to the interface."""

from __future__ import annotations

import asyncio
import inspect
from pathlib import Path
from typing import Any

import pytest

from circlet.agent.backends import (
    DEFAULT_HOST_JOB_IMAGE,
    Backend,
    ContainerBackend,
    HostBackend,
    RunnerOffer,
    choose_backend,
)
from circlet.agent.containers import ContainerEngine
from circlet.agent.executor import TaskRunner
from circlet.agent.isolation import JobUser
from circlet.agent.process import ProcessGroups
from circlet.agent.protocol import Task
from circlet.agent.task_dirs import TaskDirs
from tests.agent.backend_double import RecordingBackend
from tests.agent.conftest import MemorySink, Run, make_task, run_step

ROOTLESS = ContainerEngine("podman", ("podman",), rootless=True)
ROOTFUL = ContainerEngine("podman", ("podman",), rootless=False)
SLOT_USER = JobUser("circlet-job-0", 1234, 1234, private_tmp=True)
REFUSAL = "this runner does not run jobs on its host"
DOCKER = {"type": "docker", "image": "cimg/base:current", "raw": {"docker": [{"image": "cimg/base:current"}]}}


def interface(cls: type) -> dict[str, Any]:
    """The public members of ``cls``: each method's signature, each property's return annotation."""
    members: dict[str, Any] = {}
    for name, member in inspect.getmembers(cls):
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            members[name] = ("property", inspect.signature(member.fget).return_annotation)  # type: ignore[arg-type]
        elif inspect.isfunction(member):
            members[name] = (inspect.iscoroutinefunction(member), inspect.signature(member))
    return members


@pytest.mark.parametrize("implementation", [HostBackend, ContainerBackend, RecordingBackend])
def test_each_backend_and_the_double_have_exactly_the_interface(implementation: type) -> None:
    """Buildbot's fake-versus-real signature check: a change to the interface that the double (or a
    real backend) does not follow fails here, not in a test that happens to use it."""
    expected = interface(Backend)  # type: ignore[type-abstract]
    found = interface(implementation)
    assert {name: found.get(name) for name in expected} == expected
    assert set(found) - set(expected) <= {"containers"}, "a public member the interface does not have"


def choose(executor: dict[str, Any], offer: RunnerOffer, tmp_path: Path) -> Backend | str:
    task = Task.from_json(make_task([run_step("true")], executor={"working_directory": "~/project", **executor}))
    return choose_backend(task, TaskDirs(tmp_path / "task"), ProcessGroups(), offer)


@pytest.mark.parametrize(
    ("executor", "offer", "expected"),
    [
        ({"type": "machine"}, RunnerOffer(), "host"),
        ({"type": "machine"}, RunnerOffer(job_user=SLOT_USER), "host as circlet-job-0"),
        ({"type": "machine"}, RunnerOffer(engine=ROOTLESS), "host"),
        ({"type": "machine"}, RunnerOffer(refuse_host_jobs=REFUSAL), REFUSAL),
        ({"type": "machine"}, RunnerOffer(refuse_host_jobs=REFUSAL, engine=ROOTFUL), REFUSAL),
        (
            {"type": "machine"},
            RunnerOffer(refuse_host_jobs=REFUSAL, engine=ROOTLESS),
            f"containers of {DEFAULT_HOST_JOB_IMAGE}",
        ),
        (
            {"type": "machine"},
            RunnerOffer(refuse_host_jobs=REFUSAL, engine=ROOTLESS, host_job_image="my/image:1"),
            "containers of my/image:1",
        ),
        ({"type": "machine"}, RunnerOffer(refuse_host_jobs=REFUSAL, engine=ROOTLESS, host_job_image=None), REFUSAL),
        ({"type": "runner"}, RunnerOffer(refuse_host_jobs=REFUSAL, engine=ROOTLESS), "containers of ubuntu:22.04"),
        (DOCKER, RunnerOffer(engine=ROOTFUL), "containers of cimg/base:current"),
        (DOCKER, RunnerOffer(engine=ROOTFUL, job_user=SLOT_USER), "containers of cimg/base:current"),
        (DOCKER, RunnerOffer(), "host"),
        (DOCKER, RunnerOffer(docker="fail"), "docker jobs are not supported by this runner"),
        (DOCKER, RunnerOffer(refuse_host_jobs=REFUSAL), REFUSAL),
        ({**DOCKER, "raw": {"docker": [{}]}}, RunnerOffer(engine=ROOTFUL), "every entry of the executor's docker"),
        ({"type": "macos"}, RunnerOffer(), "macos jobs are not supported by this runner"),
        ({"type": "macos"}, RunnerOffer(refuse_host_jobs=REFUSAL), "macos jobs are not supported by this runner"),
    ],
)
def test_the_backend_chosen_for_each_job_and_runner(
    executor: dict[str, Any], offer: RunnerOffer, expected: str, tmp_path: Path
) -> None:
    chosen = choose(executor, offer, tmp_path)
    if isinstance(chosen, HostBackend):
        described = "host" if chosen.job_user is None else f"host as {chosen.job_user.name}"
    elif isinstance(chosen, ContainerBackend):
        described = f"containers of {chosen.containers.specs[0].image}"
    else:
        described = str(chosen)
    assert described.startswith(expected), described


async def test_a_host_job_in_a_rootless_container_says_so_first(tmp_path: Path) -> None:
    chosen = choose({"type": "machine"}, RunnerOffer(refuse_host_jobs=REFUSAL, engine=ROOTLESS), tmp_path)
    assert isinstance(chosen, ContainerBackend) and chosen.job_user is None
    assert chosen.containers.read_only_mounts, "the agent's Python, for the circleci helpers"
    notes: list[str] = []

    async def note(line: str) -> None:
        notes.append(line)
        raise RuntimeError("stop before any engine is called")

    with pytest.raises(RuntimeError):
        await chosen.setup(note)
    assert notes == [
        "circlet runner: this machine job runs in a container of ubuntu:22.04 (podman, rootless): the runner does"
        " not run jobs on its host as its own user"
    ]


async def run_with(backend: RecordingBackend, steps: list[dict[str, Any]], work_root: Path, **task: Any) -> Run:
    sink = MemorySink()
    runner = TaskRunner(Task.from_json(make_task(steps, **task)), sink, work_root=work_root, backend=backend)
    return Run(await runner.run(), sink)


async def test_steps_run_through_the_backend_with_its_environment_and_shell(work_root: Path) -> None:
    backend = RecordingBackend(notes=["circlet runner: set up"])
    run = await run_with(backend, [run_step("echo one"), run_step("exit 4"), run_step("echo no")], work_root)
    assert (run.result.status, run.result.message) == ("failed", "step 'exit 4' failed with exit code 4")
    assert run.sink.output(0) == "circlet runner: set up\necho one\n", "the backend's notes, then the step's output"
    assert run.sink.final() == {0: ("success", 0), 1: ("failed", 4), 2: ("skipped", None)}
    first = backend.commands[0]
    assert first.argv[0] == "double-sh" and first.argv[-1].endswith("step-0.sh")
    assert first.environment["FROM_BACKEND"] == "yes" and first.environment["CI"] == "true"
    assert first.environment["PATH"].endswith(":/double/bin"), "the task's bin first, then the backend's PATH"
    assert first.environment["CIRCLE_NODE_TOTAL"] == "1", "what only the runner knows, on top"
    assert backend.calls == ["setup", "environment", "run 0", "run 1", "stop", "destroy"]
    assert not list(work_root.iterdir()), "the task's directory is removed"


async def test_the_backend_hears_after_every_step_the_agent_ran_itself(work_root: Path) -> None:
    nested = {"type": "when", "condition": True, "steps": [{"type": "add_ssh_keys"}, run_step("echo in")]}
    backend = RecordingBackend()
    run = await run_with(backend, [{"type": "add_ssh_keys"}, run_step("echo out"), nested], work_root)
    assert run.result.status == "success", run.sink.final()
    assert backend.calls == [
        "setup",
        "environment",
        "agent_wrote",
        "run 1",
        "agent_wrote",  # the nested add_ssh_keys
        "run 2",  # the nested run, in its parent's output
        "agent_wrote",  # the when step itself
        "stop",
        "destroy",
    ]


async def test_a_setup_that_fails_fails_the_job_masked_and_still_destroys(work_root: Path) -> None:
    backend = RecordingBackend(setup_problem="pull of registry.example/app failed: bad password hunter2")
    run = await run_with(backend, [run_step("echo never")], work_root, secrets=["hunter2"])
    assert (run.result.status, run.result.message) == (
        "failed",
        "pull of registry.example/app failed: bad password ********",
    )
    assert run.sink.events == []
    assert backend.calls == ["setup", "stop", "destroy"]


async def test_the_backends_own_secrets_are_masked(work_root: Path) -> None:
    backend = RecordingBackend(secrets=["registry-s3cret"])
    run = await run_with(backend, [run_step("echo registry-s3cret")], work_root)
    assert "registry-s3cret" not in run.sink.output(0) and "********" in run.sink.output(0)


async def test_a_stop_during_setup_cancels_it_and_destroys(work_root: Path) -> None:
    backend = RecordingBackend(setup_waits=True)
    sink = MemorySink()
    runner = TaskRunner(Task.from_json(make_task([run_step("echo never")])), sink, work_root=work_root, backend=backend)
    execution = asyncio.create_task(runner.run())
    await asyncio.wait_for(backend.setup_started.wait(), 10)
    runner.stop("canceled", "canceled by a user")
    result = await asyncio.wait_for(execution, 10)
    assert (result.status, result.message) == ("canceled", "canceled by a user")
    assert sink.events == []
    assert backend.calls == ["setup", "stop", "destroy"]

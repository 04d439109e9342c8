"""The executor on its own: a task built here, run on this host, its events caught in memory."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from circlet.agent.executor import TaskRunner
from circlet.agent.protocol import Task
from tests.agent.conftest import MemorySink, Repo, execute, make_task, run_step


def process_gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


async def test_steps_succeed_with_exact_output(work_root: Path) -> None:
    run = await execute(make_task([run_step("echo hello; echo oops >&2", name="Greet"), run_step("true")]), work_root)
    assert run.result.status == "success"
    assert run.result.message is None
    assert run.sink.output(0) == "hello\noops\n"
    assert run.sink.events[0] == {"index": 0, "name": "Greet", "status": "running", "exit_code": None, "ended": False}
    assert run.sink.final() == {0: ("success", 0), 1: ("success", 0)}


async def test_failure_skips_on_success_but_runs_always_and_on_fail(work_root: Path) -> None:
    steps = [
        run_step("echo before; exit 3", name="Fails"),
        run_step("echo never", name="Skipped"),
        run_step("echo cleanup", name="Always", when="always"),
        run_step("echo failed", name="OnFail", when="on_fail"),
    ]
    run = await execute(make_task(steps), work_root)
    assert run.result.status == "failed"
    assert run.result.message == "step 'Fails' failed with exit code 3"
    assert run.sink.final() == {0: ("failed", 3), 1: ("skipped", None), 2: ("success", 0), 3: ("success", 0)}
    assert 1 not in run.sink.outputs
    assert run.sink.output(2) == "cleanup\n"
    assert run.sink.output(3) == "failed\n"


async def test_on_fail_steps_skip_when_all_is_well(work_root: Path) -> None:
    run = await execute(make_task([run_step("true"), run_step("echo no", when="on_fail")]), work_root)
    assert run.result.status == "success"
    assert run.sink.final() == {0: ("success", 0), 1: ("skipped", None)}


async def test_default_shell_is_bash_with_errexit_and_pipefail(work_root: Path) -> None:
    run = await execute(make_task([run_step("false | true\necho unreachable")]), work_root)
    assert run.sink.final()[0] == ("failed", 1)
    assert run.sink.output(0) == ""


async def test_custom_shell(work_root: Path) -> None:
    run = await execute(make_task([run_step("print('from python')", shell="python3")]), work_root)
    assert run.sink.final()[0] == ("success", 0)
    assert run.sink.output(0) == "from python\n"


async def test_bash_env_carries_variables_between_steps(work_root: Path) -> None:
    steps = [
        run_step("echo 'export GREETING=carried' >> $BASH_ENV"),
        run_step('echo "greeting=$GREETING"'),
    ]
    run = await execute(make_task(steps), work_root)
    assert run.sink.output(1) == "greeting=carried\n"


async def test_job_environment(work_root: Path) -> None:
    os.environ["CIRCLET_RUNNER_TOKEN"] = "must-not-leak"
    try:
        command = (
            'echo "$HOME|$CIRCLE_WORKING_DIRECTORY|$CIRCLE_NODE_INDEX|$CIRCLE_NODE_TOTAL|$PROJECT_VAR|$STEP_VAR"\n'
            'echo "pwd=$PWD"\n'
            'echo "token=${CIRCLET_RUNNER_TOKEN:-none}"\n'
            'test -d "$CIRCLE_INTERNAL_TASK_DATA" && test -f "$BASH_ENV" && echo dirs-ok'
        )
        payload = make_task(
            [run_step(command, environment={"STEP_VAR": "step", "PROJECT_VAR": "overridden"})],
            environment={"PROJECT_VAR": "project"},
            job={"id": "j", "name": "build", "parallel_index": 2, "parallelism": 4},
        )
        run = await execute(payload, work_root)
    finally:
        del os.environ["CIRCLET_RUNNER_TOKEN"]
    home = work_root / f"task-{payload['task_id']}" / "home"
    assert run.sink.output(0) == (
        f"{home}|~/project|2|4|overridden|step\npwd={home / 'project'}\ntoken=none\ndirs-ok\n"
    )


async def test_working_directories_and_tilde(work_root: Path) -> None:
    steps = [
        run_step("pwd"),
        run_step("pwd", working_directory="sub/dir"),
        run_step("pwd", working_directory="~/elsewhere"),
        run_step("ls ~", name="home"),
    ]
    payload = make_task(steps, executor={"type": "machine", "working_directory": "~/app"})
    run = await execute(payload, work_root)
    home = work_root / f"task-{payload['task_id']}" / "home"
    assert [run.sink.output(i) for i in range(3)] == [
        f"{home / 'app'}\n",
        f"{home / 'app' / 'sub' / 'dir'}\n",
        f"{home / 'elsewhere'}\n",
    ]
    assert run.sink.output(3) == "app\nelsewhere\n"
    assert not (work_root / f"task-{payload['task_id']}").exists(), "the task's directory is removed"


async def test_no_output_timeout(work_root: Path) -> None:
    steps = [run_step("echo start; sleep 30", no_output_timeout="1s"), run_step("echo after", when="always")]
    run = await execute(make_task(steps), work_root, kill_grace=1)
    assert run.result.status == "timedout"
    assert run.result.message == "step 'echo start; sleep 30' timed out: no output for 1s"
    assert run.sink.final() == {0: ("timedout", None), 1: ("success", 0)}
    assert run.sink.output(0) == "start\n\nToo long with no output (exceeded 1s)\n"


async def test_output_resets_the_no_output_timer(work_root: Path) -> None:
    command = "for i in 1 2 3 4; do echo $i; sleep 0.4; done"
    run = await execute(make_task([run_step(command, no_output_timeout="1s")]), work_root)
    assert run.result.status == "success"
    assert run.sink.output(0) == "1\n2\n3\n4\n"


async def test_background_step_runs_alongside_and_is_killed_at_job_end(work_root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    steps = [
        run_step(f"echo serving; sleep 0.3; touch {marker}; sleep 300", name="Server", background=True),
        run_step(f"for i in $(seq 50); do test -f {marker} && break; sleep 0.1; done; test -f {marker}", name="Use"),
    ]
    run = await execute(make_task(steps), work_root, kill_grace=1)
    assert run.result.status == "success"
    assert run.sink.final() == {0: ("canceled", None), 1: ("success", 0)}
    assert run.sink.output(0) == "serving\n"


async def test_failed_background_step_fails_the_job(work_root: Path) -> None:
    steps = [run_step("exit 4", name="Bg", background=True), run_step("sleep 0.5")]
    run = await execute(make_task(steps), work_root)
    assert run.result.status == "failed"
    assert run.sink.final()[0] == ("failed", 4)


async def test_cancel_kills_the_whole_process_group(work_root: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    steps = [run_step(f"sleep 300 & echo $! > {pid_file}; wait"), run_step("echo never", when="always")]
    sink = MemorySink()
    runner = TaskRunner(Task.from_json(make_task(steps)), sink, work_root=work_root, kill_grace=2)
    running = asyncio.create_task(runner.run())
    for _ in range(100):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.05)
    sleeper = int(pid_file.read_text())
    assert not process_gone(sleeper)
    runner.stop("canceled", "canceled")
    result = await asyncio.wait_for(running, 10)
    assert result.status == "canceled"
    assert sink.final() == {0: ("canceled", None)}, "the steps after a cancel do not run"
    for _ in range(40):
        if process_gone(sleeper):
            break
        await asyncio.sleep(0.05)
    assert process_gone(sleeper)


async def test_processes_left_behind_by_a_step_die_with_the_job(work_root: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    run = await execute(make_task([run_step(f"nohup sleep 300 >/dev/null 2>&1 & echo $! > {pid_file}")]), work_root)
    assert run.result.status == "success"
    sleeper = int(pid_file.read_text())
    for _ in range(40):
        if process_gone(sleeper):
            break
        await asyncio.sleep(0.05)
    assert process_gone(sleeper)


async def test_docker_job_runs_on_the_host_with_a_warning(work_root: Path) -> None:
    payload = make_task(
        [run_step("echo hi"), run_step("echo again")],
        executor={"type": "docker", "image": "cimg/base:stable", "working_directory": "~/project"},
    )
    run = await execute(payload, work_root, docker="host")
    assert run.result.status == "success"
    assert run.sink.output(0) == (
        "circlet runner: warning: this docker job runs directly on the runner's host (--docker host); "
        "image cimg/base:stable is not used, no service containers, host tools only\nhi\n"
    )
    assert run.sink.output(1) == "again\n"


async def test_docker_job_refused_with_docker_fail(work_root: Path) -> None:
    payload = make_task([run_step("echo hi")], executor={"type": "docker", "image": "cimg/base:stable"})
    run = await execute(payload, work_root, docker="fail")
    assert run.result.status == "failed"
    assert run.result.message == "docker jobs are not supported by this runner (it was started with --docker fail)"
    assert run.sink.events == []


@pytest.mark.parametrize("executor", ["macos", "windows"])
async def test_macos_and_windows_are_refused(work_root: Path, executor: str) -> None:
    run = await execute(make_task([run_step("echo hi")], executor={"type": executor}), work_root)
    assert run.result.status == "failed"
    assert run.result.message == (
        f"{executor} jobs are not supported by this runner: it runs jobs on its own host (machine, docker)"
    )
    assert list(work_root.iterdir()) == []


async def test_unknown_step_type_fails_that_step_clearly(work_root: Path) -> None:
    steps = [{"type": "save_kittens", "key": "k"}, run_step("echo after", when="always")]
    run = await execute(make_task(steps), work_root)
    assert run.result.status == "failed"
    assert run.result.message == "step type 'save_kittens' is not supported by this runner"
    assert run.sink.output(0) == "circlet runner: step type 'save_kittens' is not supported by this runner\n"
    assert run.sink.final() == {0: ("failed", None), 1: ("success", 0)}


async def test_when_and_unless_steps(work_root: Path) -> None:
    steps = [
        {"type": "unless", "condition": True, "steps": [{"run": {"command": "echo not chosen"}}]},
        {"type": "when", "condition": {"equal": ["main", "main"]}, "steps": [{"run": "echo chosen"}, "run"]},
    ]
    run = await execute(make_task(steps), work_root)
    assert run.sink.output(0) == "Condition not met; no steps to run\n"
    assert run.sink.output(1) == "==> echo chosen\nchosen\n==> run\ncirclet runner: this run step has no command\n"
    assert run.sink.final() == {0: ("success", 0), 1: ("failed", None)}


async def test_run_without_command_or_with_a_bad_timeout(work_root: Path) -> None:
    run = await execute(
        make_task([{"type": "run"}, run_step("true", no_output_timeout="soon", when="always")]), work_root
    )
    assert run.sink.final() == {0: ("failed", None), 1: ("failed", None)}
    assert "not a duration: 'soon'" in run.sink.output(1)


async def test_secrets_are_masked_across_chunks(work_root: Path) -> None:
    secret = "s3cr3t_value"
    command = (
        f"printf 'start '; sleep 0.05; for c in $(echo {secret[:6]} | fold -w1); do printf %s $c; sleep 0.05; done;"
        f" echo {secret[6:]}"
    )
    steps = [
        run_step(command),
        run_step('echo "$TOKEN and $TOKEN."'),
        run_step("printf abc"),  # shorter than 4: never masked
    ]
    payload = make_task(steps, environment={"TOKEN": secret}, secrets=[secret, "abc"])
    run = await execute(payload, work_root)
    assert run.sink.output(0) == "start ********\n"
    # What cannot begin a secret leaves at once; the secret's first characters wait for the rest.
    assert [chunk for index, chunk in run.sink.chunks if index == 0][0] == b"start "
    assert all(secret[:4].encode() not in chunk for _, chunk in run.sink.chunks)
    assert run.sink.output(1) == "******** and ********.\n"
    assert run.sink.output(2) == "abc"


class TestCheckout:
    async def test_checks_out_the_revision_into_the_working_directory(self, work_root: Path, repo: Repo) -> None:
        checkout = {"url": str(repo.path), "revision": repo.second, "branch": "main"}
        steps = [{"type": "checkout"}, run_step("cat README; git rev-parse HEAD; git branch --show-current")]
        run = await execute(make_task(steps, checkout=checkout), work_root)
        assert run.result.status == "success", run.sink.outputs
        assert run.sink.output(1) == f"two\n{repo.second}\nmain\n"
        assert run.sink.output(0).startswith(f"Checking out {repo.second} of {repo.path} into ")

    async def test_an_older_revision_and_a_path(self, work_root: Path, repo: Repo) -> None:
        checkout = {"url": str(repo.path), "revision": repo.first, "branch": "main"}
        steps = [{"type": "checkout", "path": "~/code"}, run_step("cat ~/code/README; ls")]
        run = await execute(make_task(steps, checkout=checkout), work_root)
        assert run.result.status == "success", run.sink.outputs
        assert run.sink.output(1) == "one\n"

    async def test_falls_back_to_a_full_fetch(self, work_root: Path, repo: Repo) -> None:
        checkout = {"url": f"file://{repo.path}", "revision": repo.first, "branch": "main"}
        payload = make_task([{"type": "checkout"}, run_step("cat README")], checkout=checkout)
        # protocol v0 refuses unadvertised commits: the shallow fetch fails, the full one works
        payload["environment"]["GIT_CONFIG_COUNT"] = "1"
        payload["environment"]["GIT_CONFIG_KEY_0"] = "protocol.version"
        payload["environment"]["GIT_CONFIG_VALUE_0"] = "0"
        run = await execute(payload, work_root)
        assert run.result.status == "success", run.sink.outputs
        assert "Shallow fetch not possible; fetching the whole history\n" in run.sink.output(0)
        assert run.sink.output(1) == "one\n"

    async def test_a_branch_without_revision(self, work_root: Path, repo: Repo) -> None:
        checkout = {"url": str(repo.path), "revision": None, "branch": "main"}
        run = await execute(make_task([{"type": "checkout"}, run_step("cat README")], checkout=checkout), work_root)
        assert run.sink.output(1) == "two\n"

    async def test_a_missing_revision_fails(self, work_root: Path, repo: Repo) -> None:
        checkout = {"url": str(repo.path), "revision": "0" * 40, "branch": "main"}
        run = await execute(make_task([{"type": "checkout"}], checkout=checkout), work_root)
        assert run.result.status == "failed"
        assert run.result.message == f"checkout of {'0' * 40} failed"

    async def test_ssh_key_is_used_through_git_ssh_command(self, work_root: Path, repo: Repo, tmp_path: Path) -> None:
        # a fake ssh records how it was called and the key file's mode, then fails
        fake_bin = tmp_path / "bin"
        fake_bin.mkdir()
        record = tmp_path / "ssh-called"
        (fake_bin / "ssh").write_text(f'#!/bin/sh\necho "$@" > {record}\nstat -c %a "$2" >> {record}\nexit 1\n')
        (fake_bin / "ssh").chmod(0o755)
        checkout = {"url": "git@example.invalid:acme/app.git", "revision": repo.first, "ssh_private_key": "KEY"}
        payload = make_task([{"type": "checkout"}], checkout=checkout)
        payload["environment"]["PATH"] = f"{fake_bin}:{os.environ['PATH']}"
        run = await execute(payload, work_root)
        assert run.result.status == "failed"
        called = record.read_text().splitlines()
        assert called[0].startswith("-i ") and "checkout_key -o IdentitiesOnly=yes" in called[0]
        assert called[1] == "600"

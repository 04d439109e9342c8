"""The step types beyond ``run`` and ``checkout`` that need no server storage: ``add_ssh_keys``,
``setup_remote_docker``; and the job-level ``shell``. Real keys, real ssh and docker commands."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from circlet.agent.protocol import Task
from circlet.agent.steps.ssh_keys import key_file_name
from tests.agent.conftest import execute, make_task, run_step


@dataclass
class Key:
    fingerprint: str
    private_key: str

    @property
    def file_name(self) -> str:
        return key_file_name(self.fingerprint)

    def payload(self) -> dict[str, str]:
        return {"fingerprint": self.fingerprint, "private_key": self.private_key}


def new_key(directory: Path, name: str) -> Key:
    path = directory / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(path)], check=True)
    listed = subprocess.run(["ssh-keygen", "-l", "-f", str(path)], check=True, capture_output=True, text=True)
    return Key(listed.stdout.split()[1], path.read_text())


def masked(key: Key) -> str:
    """The key as its masked ``cat`` shows it: every line of its body masked."""
    return "".join(line if line.startswith("-----") else "********\n" for line in key.private_key.splitlines(True))


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Key, Key]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("no ssh-keygen on this host")
    return new_key(tmp_path, "first"), new_key(tmp_path, "second")


class TestAddSshKeys:
    async def test_installs_the_listed_key_privately_and_never_shows_it(
        self, work_root: Path, keys: tuple[Key, Key]
    ) -> None:
        first, second = keys
        show = (
            "stat -c '%a %n' ~/.ssh ~/.ssh/* | sed \"s|$HOME|~|\"\n"
            'cat ~/.ssh/config | sed "s|$HOME|~|"\n'
            f"cat ~/.ssh/{first.file_name}\n"
            f"head -3 ~/.ssh/{first.file_name} | tr -d '\\n'; echo\n"
        )
        steps = [{"type": "add_ssh_keys", "fingerprints": [first.fingerprint]}, run_step(show)]
        run = await execute(make_task(steps, ssh_keys=[first.payload(), second.payload()]), work_root)
        assert run.result.status == "success", run.sink.outputs
        assert run.sink.output(0) == f"Added SSH key {first.fingerprint} as ~/.ssh/{first.file_name}\n"
        assert run.sink.output(1) == (
            f"700 ~/.ssh\n600 ~/.ssh/config\n600 ~/.ssh/{first.file_name}\n"
            "# Written by circlet's add_ssh_keys step\n"
            "Host *\n"
            f'  IdentityFile "~/.ssh/{first.file_name}"\n'
            "  StrictHostKeyChecking accept-new\n"
            '  UserKnownHostsFile "~/.ssh/known_hosts"\n'
            + masked(first)
            + "-----BEGIN OPENSSH PRIVATE KEY-----****************\n"
        )
        assert all(line not in str(run.sink.outputs) for line in first.private_key.splitlines()[1:-1])

    async def test_ssh_on_the_path_reads_the_jobs_config(self, work_root: Path, keys: tuple[Key, Key]) -> None:
        if shutil.which("ssh") is None:
            pytest.skip("no ssh on this host")
        first, second = keys
        command = "ssh -G example.invalid 2>/dev/null | grep -E '^(identityfile|stricthostkeychecking) '"
        command += ' | sed "s|$HOME|~|"'
        steps = [{"type": "add_ssh_keys"}, run_step(command)]
        run = await execute(make_task(steps, ssh_keys=[first.payload(), second.payload()]), work_root)
        assert run.result.status == "success", run.sink.outputs
        files = sorted([first.file_name, second.file_name])
        assert run.sink.output(1) == (
            f"stricthostkeychecking accept-new\nidentityfile ~/.ssh/{files[0]}\nidentityfile ~/.ssh/{files[1]}\n"
        )

    async def test_a_fingerprint_the_project_lacks_fails_the_step(self, work_root: Path, keys: tuple[Key, Key]) -> None:
        first, _ = keys
        steps = [{"type": "add_ssh_keys", "fingerprints": [first.fingerprint, "SHA256:unknown"]}]
        run = await execute(make_task(steps, ssh_keys=[first.payload()]), work_root)
        assert run.result.status == "failed"
        assert run.result.message == "add_ssh_keys: this project has no SSH key with fingerprint SHA256:unknown"
        assert run.sink.output(0) == f"{run.result.message}\n"

    async def test_a_key_is_named_by_any_of_its_fingerprints_and_scoped_to_its_hosts(
        self, work_root: Path, keys: tuple[Key, Key]
    ) -> None:
        """The server sends a key once, by its MD5 fingerprint, with its ``SHA256:`` form in
        ``aliases``; the file is named after the form the step used. A key with ``hostnames`` is
        offered to those hosts only, before the keys for every host."""
        first, second = keys
        md5 = "aa:bb:cc:00:11"
        scoped = {**first.payload(), "fingerprint": md5, "aliases": [first.fingerprint], "hostnames": ["github.com"]}
        steps = [
            {"type": "add_ssh_keys", "fingerprints": [first.fingerprint]},
            {"type": "add_ssh_keys", "fingerprints": [second.fingerprint, md5]},
            run_step('stat -c "%a %n" ~/.ssh/id_rsa_* | sed "s|$HOME|~|"; cat ~/.ssh/config | sed "s|$HOME|~|"'),
        ]
        run = await execute(make_task(steps, ssh_keys=[scoped, second.payload()]), work_root)
        assert run.result.status == "success", run.sink.outputs
        assert run.sink.output(0) == f"Added SSH key {first.fingerprint} as ~/.ssh/{first.file_name} for github.com\n"
        files = sorted([first.file_name, second.file_name, key_file_name(md5)])
        scoped_files = sorted([first.file_name, key_file_name(md5)])
        assert run.sink.output(2) == (
            "".join(f"600 ~/.ssh/{name}\n" for name in files) + "# Written by circlet's add_ssh_keys step\n"
            "Host github.com\n" + "".join(f'  IdentityFile "~/.ssh/{name}"\n' for name in scoped_files) + "Host *\n"
            f'  IdentityFile "~/.ssh/{second.file_name}"\n'
            "  StrictHostKeyChecking accept-new\n"
            '  UserKnownHostsFile "~/.ssh/known_hosts"\n'
        )
        if shutil.which("ssh") is not None:
            show = 'ssh -G {} 2>/dev/null | grep "^identityfile " | sed "s|$HOME|~|"'
            probe = [run_step(show.format("github.com")), run_step(show.format("gitlab.com"))]
            again = await execute(
                make_task([{"type": "add_ssh_keys"}, *probe], ssh_keys=[scoped, second.payload()]), work_root
            )
            assert again.sink.output(1) == (
                f"identityfile ~/.ssh/{key_file_name(md5)}\nidentityfile ~/.ssh/{second.file_name}\n"
            )
            assert again.sink.output(2) == f"identityfile ~/.ssh/{second.file_name}\n"

    async def test_a_hostname_that_could_break_the_config_is_dropped(
        self, work_root: Path, keys: tuple[Key, Key]
    ) -> None:
        first, _ = keys
        evil = {**first.payload(), "hostnames": ["x\n  ProxyCommand touch /tmp/pwned", "bad host"]}
        steps = [{"type": "add_ssh_keys"}, run_step("cat ~/.ssh/config")]
        run = await execute(make_task(steps, ssh_keys=[evil]), work_root)
        assert run.result.status == "success", run.sink.outputs
        assert "ProxyCommand" not in run.sink.output(1) and "IdentityFile" not in run.sink.output(1)

    def test_the_payload_with_and_without_aliases_and_hostnames(self) -> None:
        task = Task.from_json(
            make_task(
                [],
                ssh_keys=[
                    {"fingerprint": "aa:bb", "private_key": "K", "aliases": [" SHA256:x "], "hostnames": ["h.io"]},
                    {"fingerprint": "cc:dd", "private_key": "L"},
                ],
            )
        )
        assert [(key.aliases, key.hostnames) for key in task.ssh_keys] == [(("SHA256:x",), ("h.io",)), ((), ())]

    def test_file_names(self) -> None:
        assert key_file_name("aa:bb:0c") == "id_rsa_aabb0c"
        assert key_file_name("SHA256:ab/c+d=") == "id_rsa_SHA256ab_c_d_"


class TestSetupRemoteDocker:
    async def test_reports_the_engine_or_its_absence_clearly(self, work_root: Path) -> None:
        step = {"type": "setup_remote_docker", "version": "20.10.24", "docker_layer_caching": True}
        run = await execute(make_task([step, run_step("echo after")]), work_root)
        probe = subprocess.run(["docker", "info"], capture_output=True, timeout=10) if shutil.which("docker") else None
        notes = (
            "setup_remote_docker: version 20.10.24 asked for; this runner uses its Docker engine as it is\n"
            "setup_remote_docker: docker_layer_caching is not available on this runner; ignored\n"
        )
        assert run.sink.output(0).startswith(notes)
        if probe is not None and probe.returncode == 0:
            assert run.result.status == "success"
            assert "setup_remote_docker: using " in run.sink.output(0)
            return
        assert run.result.status == "failed"
        assert run.result.message is not None
        assert run.result.message.startswith(
            "setup_remote_docker: this runner has no Docker engine (docker info failed: "
        )
        assert run.sink.output(0) == f"{notes}{run.result.message}\n"
        assert run.sink.final() == {0: ("failed", None), 1: ("skipped", None)}

    async def test_without_a_docker_command(self, work_root: Path, tmp_path: Path) -> None:
        empty = tmp_path / "empty-bin"
        empty.mkdir()
        run = await execute(make_task([{"type": "setup_remote_docker"}], environment={"PATH": str(empty)}), work_root)
        assert run.result.message == (
            "setup_remote_docker: this runner has no Docker engine"
            " (docker info failed: there is no docker command on the PATH)"
        )


class TestJobShell:
    async def test_run_steps_use_the_job_shell_unless_they_name_one(self, work_root: Path) -> None:
        steps = [run_step("import sys; print('python', sys.version_info[0])"), run_step("echo bash", shell="/bin/sh")]
        executor = {"type": "machine", "working_directory": "~/project", "shell": "python3 -u"}
        run = await execute(make_task(steps, executor=executor), work_root)
        assert run.result.status == "success", run.sink.outputs
        assert run.sink.output(0) == "python 3\n"
        assert run.sink.output(1) == "bash\n"

    def test_the_payload_carries_it_with_keys_and_timings(self) -> None:
        payload = make_task(
            [],
            executor={"type": "docker", "shell": "/bin/sh -e"},
            ssh_keys=[{"fingerprint": " SHA256:x ", "private_key": "KEY"}],
            test_timings={"filename": {"a.py": 1.5}},
        )
        task = Task.from_json(payload)
        assert task.executor.shell == "/bin/sh -e"
        assert [(key.fingerprint, key.private_key) for key in task.ssh_keys] == [("SHA256:x", "KEY")]
        assert task.test_timings == {"filename": {"a.py": 1.5}}
        bare = Task.from_json(make_task([]))
        assert (bare.executor.shell, bare.ssh_keys, bare.test_timings) == (None, [], None)

"""Who a job runs as (issue 21) and what of the agent it sees (issue 11): the executor on its own,
with real processes; the job users are real users of this host (tests run as root, as CI does)."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import sys
import tarfile
from pathlib import Path

import pytest

from circlet.agent.isolation import IsolationError, job_users
from tests.agent.conftest import Repo, execute, make_task, run_step
from tests.agent.test_executor import process_gone
from tests.agent.test_storage_steps import MemoryStorage, tar_of
from tests.conftest import reachable_by_jobs

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root switches users")


async def test_a_job_never_sees_the_agents_virtual_environment(
    work_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the README's activated venv, a job's ``python``/``pip`` were circlet's own."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("the agent does not run in a virtual environment")
    venv_bin = str(Path(sys.prefix) / "bin")
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VIRTUAL_ENV", sys.prefix)
    monkeypatch.setenv("PYTHONPATH", "/agent/path")
    monkeypatch.setenv("PYTHONHOME", "/agent/home")
    show = 'echo "PATH=$PATH"; echo "VE=${VIRTUAL_ENV:-} PP=${PYTHONPATH:-} PH=${PYTHONHOME:-}"; command -v python3'
    run = await execute(make_task([run_step(show)]), work_root)
    assert run.result.status == "success"
    output = run.sink.output(0)
    path = output.splitlines()[0].removeprefix("PATH=").split(os.pathsep)
    assert venv_bin not in path
    assert "VE= PP= PH=" in output
    python = output.splitlines()[2]
    assert not python.startswith(sys.prefix), python


async def test_host_jobs_are_refused_when_the_agent_cannot_isolate_them(work_root: Path) -> None:
    refusal = "this runner does not run jobs on its host"
    run = await execute(make_task([run_step("echo ran")]), work_root, refuse_host_jobs=refusal)
    assert run.result.status == "failed" and run.result.message == refusal
    assert run.sink.events == []


@as_root
async def test_a_job_runs_as_its_slot_user_with_its_own_tmp_and_leaves_nothing(
    work_root: Path, repo: Repo, shared_with_jobs: Path
) -> None:
    [user] = job_users((), 1)
    pid_file = shared_with_jobs / "daemon"
    script = (
        'echo "uid=$(id -u) owner=$(stat -c %u README) tmp=$TMPDIR"\n'
        "echo mine > /tmp/job-file && cat /tmp/job-file\n"
        f"setsid sh -c 'echo $$ > {pid_file}; exec sleep 600' </dev/null >/dev/null 2>&1 &\n"
        f"until [ -s {pid_file} ]; do sleep 0.05; done\n"
    )
    checkout = {"url": str(repo.path), "revision": repo.second, "branch": "main"}
    steps = [{"type": "checkout", "name": "Checkout code"}, run_step(script)]
    run = await execute(make_task(steps, checkout=checkout), work_root, job_user=user)
    assert run.result.status == "success", run.sink.output(0) + run.sink.output(1)
    assert f"uid={user.uid} owner={user.uid} tmp=/tmp\nmine\n" in run.sink.output(1)
    assert not Path("/tmp/job-file").exists()
    assert process_gone(int(pid_file.read_text())), "a daemon that left its process group outlived the job"
    assert user.processes() == []


@as_root
def test_job_users_are_never_shared() -> None:
    first = job_users((), 2)
    second = job_users((), 1)
    names = [user.name for user in (*first, *second)]
    assert len(set(names)) == 3
    assert len({user.uid for user in (*first, *second)}) == 3
    with pytest.raises(IsolationError, match="in use by another runner"):
        job_users((first[0].name,), 1)
    with pytest.raises(IsolationError, match="a user of its own"):
        job_users(("nobody",), 2)
    with pytest.raises(IsolationError, match="is root"):
        job_users(("root",), 1)
    # A refused user is not kept held: asking again is refused for what it is, not as "in use".
    with pytest.raises(IsolationError, match="is root"):
        job_users(("root",), 1)


@as_root
async def test_the_agents_file_work_follows_no_link_the_job_planted(
    work_root: Path, shared_with_jobs: Path, tmp_path: Path
) -> None:
    """Links to what only root may read or change: ``store_artifacts`` must not upload it,
    ``add_ssh_keys`` must not write or chmod through it, a step script must not be written through it."""
    [user] = job_users((), 1)
    secret = tmp_path / "root-only.txt"  # under pytest's 0700 directory, and 0600 itself
    secret.write_text("only root reads this")
    secret.chmod(0o600)
    reachable = shared_with_jobs / "roots"
    reachable.mkdir(mode=0o755)
    (reachable / "precious").write_text("root's\n")
    (reachable / "precious").chmod(0o644)
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nbody\n-----END OPENSSH PRIVATE KEY-----\n"
    steps = [
        run_step(
            f"ln -s {secret} ~/leak && ln -s {reachable} ~/.ssh"
            f" && ln -s {reachable}/precious $CIRCLE_INTERNAL_TASK_DATA/step-3.sh"
        ),
        {"type": "store_artifacts", "path": "~/leak"},
        {"type": "add_ssh_keys", "when": "always"},
        run_step("echo ran", when="always"),
    ]
    storage = MemoryStorage()
    task = make_task(steps, ssh_keys=[{"fingerprint": "SHA256:abc", "private_key": key}])
    run = await execute(task, work_root, job_user=user, storage=storage)
    assert storage.artifacts == {}
    assert run.sink.final()[1][0] == "failed" and "Permission denied" in run.sink.output(1)
    assert run.sink.final()[2][0] == "failed"
    assert sorted(p.name for p in reachable.iterdir()) == ["precious"]
    assert stat.S_IMODE(reachable.stat().st_mode) == 0o755
    assert (reachable / "precious").read_text() == "root's\n"
    assert run.sink.output(3) == "ran\n", "the script replaced the link"


@as_root
async def test_storage_steps_and_helpers_work_as_the_job_user(work_root: Path) -> None:
    [user] = job_users((), 1)
    storage = MemoryStorage()
    steps = [
        run_step("mkdir -p r && echo '<testsuite><testcase name=\"t\"/></testsuite>' > r/a.xml && echo hi > /tmp/art"),
        {"type": "save_cache", "key": "deps-v1", "paths": ["r"]},
        {"type": "persist_to_workspace", "root": ".", "paths": ["r"]},
        {"type": "store_test_results", "path": "r"},
        {"type": "store_artifacts", "path": "/tmp/art"},
        run_step("rm -rf r"),
        {"type": "restore_cache", "keys": ["deps-"]},
        {"type": "attach_workspace", "at": "ws"},
        run_step('stat -c %U r/a.xml ws/r/a.xml && circleci tests glob "ws/**/*.xml" && touch r/mine ws/mine'),
    ]
    run = await execute(make_task(steps), work_root, job_user=user, storage=storage)
    assert run.result.status == "success", run.sink.final()
    assert run.sink.output(8) == f"{user.name}\n{user.name}\nws/r/a.xml\n"
    assert storage.artifacts == {"tmp/art": b"hi\n"}
    assert len(storage.tests) == 1 and list(storage.caches) == ["deps-v1"]


@as_root
async def test_the_file_identity_is_the_job_users_and_only_on_its_thread(tmp_path: Path) -> None:
    [user] = job_users((), 1)
    group_only = tmp_path / "group-root.txt"
    group_only.write_text("group 0 may read")
    group_only.chmod(0o640)
    reachable_by_jobs(tmp_path).chmod(0o777)  # only the file's own mode stands in the way
    created = tmp_path / "made-by-job"
    previous = os.getgroups()
    # As a root whose groups include root's (the file's group); set before the agent's file thread
    # starts (libc changes every thread's groups, but a thread started later inherits them surely).
    os.setgroups([0])
    try:
        await asyncio.to_thread(os.getgroups)
        await user.files(created.write_text, "x")
        with pytest.raises(PermissionError):
            await user.files(group_only.read_text)
    finally:
        os.setgroups(previous)
    assert (created.stat().st_uid, created.stat().st_gid) == (user.uid, user.gid)
    assert group_only.read_text() == "group 0 may read", "the agent's own thread is still root"


def cached_names(storage: MemoryStorage, key: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(storage.caches[key])) as tar:
        return tar.getnames()


@as_root
async def test_save_cache_archives_only_what_the_job_user_may_read(work_root: Path, shared_with_jobs: Path) -> None:
    """Absolute paths (``/root/.circlet``, ``/etc``) and links to them were read by the agent as root."""
    [user] = job_users((), 1)
    server_home = shared_with_jobs / "home"  # as ``$CIRCLET_HOME``: owner-only (not under /tmp, which
    server_home.mkdir(mode=0o700)  # a job with a /tmp of its own sees as that one)
    (server_home / "secret-keys.json").write_text("KEYRING-BYTES")
    mixed = shared_with_jobs / "etc"  # as ``/etc``: readable, with a root-only file in it
    mixed.mkdir(mode=0o755)
    (mixed / "hostname").write_text("host\n")
    (mixed / "shadow").write_text("SHADOW-BYTES")
    (mixed / "shadow").chmod(0o600)
    storage = MemoryStorage()
    steps = [
        run_step(f"ln -s {server_home} ~/via-link && mkdir -p deps && echo mine > deps/d"),
        {
            "type": "save_cache",
            "key": "leak-v1",
            "paths": [str(server_home), "~/via-link/secret-keys.json", str(mixed), "deps"],
        },
        {"type": "save_cache", "key": "only-root-v1", "paths": [str(server_home / "secret-keys.json")]},
        {"type": "persist_to_workspace", "root": str(server_home), "paths": ["secret-keys.json"]},
        {"type": "persist_to_workspace", "root": str(shared_with_jobs), "paths": ["home"], "when": "always"},
        {"type": "persist_to_workspace", "root": str(shared_with_jobs), "paths": ["etc"], "when": "always"},
        {"type": "save_cache", "key": f'sum-{{{{ checksum "{mixed}/shadow" }}}}', "paths": ["deps"], "when": "always"},
    ]
    run = await execute(make_task(steps), work_root, job_user=user, storage=storage)
    output = run.sink.output(1)
    assert run.sink.final()[1] == ("success", 0), output
    assert f"Warning: could not read {server_home}: permission denied; not cached\n" in output
    assert "Warning: could not find ~/via-link/secret-keys.json; not cached\n" in output
    assert f"Warning: could not read {mixed}/shadow: permission denied; not cached\n" in output
    assert cached_names(storage, "leak-v1") == [str(mixed), f"{mixed}/hostname", "project/deps", "project/deps/d"]
    assert b"KEYRING-BYTES" not in storage.caches["leak-v1"] and b"SHADOW-BYTES" not in storage.caches["leak-v1"]
    assert run.sink.output(2).endswith("No cache is saved for key: only-root-v1: none of its paths exist\n")
    assert "only-root-v1" not in storage.caches
    assert run.sink.final()[3][0] == "failed" and "could not find secret-keys.json" in run.sink.output(3)
    assert run.sink.final()[4][0] == "failed"
    assert f"could not read home under {shared_with_jobs}: permission denied" in run.sink.output(4)
    assert run.sink.final()[5] == ("success", 0)
    assert run.sink.output(5) == (
        f"Warning: could not read {mixed}/shadow: permission denied; not persisted\n"
        f"Persisted 1 paths from {shared_with_jobs} to the workspace\n"
    )
    [(_, layer)] = storage.layers
    assert b"SHADOW-BYTES" not in layer
    assert run.sink.final()[6][0] == "failed"  # the key would tell the job a hash of root's file
    assert f"checksum: cannot read {mixed}/shadow: Permission denied" in run.sink.output(6)
    assert sorted(storage.caches) == ["leak-v1"]


@as_root
async def test_a_restore_never_writes_where_the_job_user_may_not(work_root: Path, shared_with_jobs: Path) -> None:
    """A crafted cache naming root's files (a server's database, a system file) rolled them back."""
    [user] = job_users((), 1)
    roots = shared_with_jobs / "roots"  # root's, as /etc or $CIRCLET_HOME is
    roots.mkdir(mode=0o755)
    (roots / "precious").write_text("root's\n")
    server_home = shared_with_jobs / "home"
    server_home.mkdir(mode=0o700)
    (server_home / "circlet.db").write_text("live\n")
    storage = MemoryStorage()
    storage.caches["crafted-roots"] = tar_of(("ok", tarfile.REGTYPE, ""), (f"{roots}/precious", tarfile.REGTYPE, ""))
    storage.caches["crafted-new"] = tar_of((f"{roots}/planted", tarfile.REGTYPE, ""))
    storage.caches["crafted-home"] = tar_of((f"{server_home}/circlet.db", tarfile.REGTYPE, ""))
    storage.layers.append(("layer", tar_of(("planted", tarfile.REGTYPE, ""))))
    steps = [
        {"type": "restore_cache", "key": "crafted-roots"},
        {"type": "restore_cache", "key": "crafted-new", "when": "always"},
        {"type": "restore_cache", "key": "crafted-home", "when": "always"},
        {"type": "attach_workspace", "at": str(roots), "when": "always"},
        run_step("stat -c %U ~/ok", when="always"),
    ]
    run = await execute(make_task(steps), work_root, job_user=user, storage=storage)
    final = run.sink.final()
    assert [final[index][0] for index in range(4)] == ["failed"] * 4
    assert f"could not write {roots}/precious: permission denied" in run.sink.output(0)
    assert f"could not write {roots}/planted: permission denied" in run.sink.output(1)
    assert "permission denied (the job may not write there)" in run.sink.output(2)
    assert "permission denied (the job may not write there)" in run.sink.output(3)
    assert sorted(p.name for p in roots.iterdir()) == ["precious"]
    assert (roots / "precious").read_text() == "root's\n"
    assert sorted(p.name for p in server_home.iterdir()) == ["circlet.db"]
    assert (server_home / "circlet.db").read_text() == "live\n"
    assert run.sink.output(4) == f"{user.name}\n", "what the restore wrote in the home is the job's"


@as_root
async def test_a_jobs_own_absolute_path_round_trips_as_its_user(work_root: Path, shared_with_jobs: Path) -> None:
    [user] = job_users((), 1)
    deps = shared_with_jobs / "opt-deps"
    storage = MemoryStorage()
    save = [
        run_step(f"mkdir -p {deps}/lib && echo dep > {deps}/lib/d && ln -s /usr/bin/env {deps}/env"),
        {"type": "save_cache", "key": "own-v1", "paths": [str(deps)]},
        {"type": "persist_to_workspace", "root": str(deps), "paths": ["lib"]},
        run_step(f"rm -rf {deps}"),
    ]
    saved = await execute(make_task(save), work_root, job_user=user, storage=storage)
    assert saved.result.status == "success", saved.sink.outputs
    restore = [
        {"type": "restore_cache", "key": "own-v1"},
        {"type": "attach_workspace", "at": "ws"},
        run_step(f"cat {deps}/lib/d ws/lib/d && readlink {deps}/env && stat -c %U {deps}/lib/d ws/lib/d"),
    ]
    restored = await execute(make_task(restore), work_root, job_user=user, storage=storage)
    assert restored.result.status == "success", restored.sink.outputs
    assert restored.sink.output(2) == f"dep\ndep\n/usr/bin/env\n{user.name}\n{user.name}\n"
    assert deps.stat().st_uid == user.uid

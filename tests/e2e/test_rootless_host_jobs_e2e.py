"""A server that is not root runs host jobs in a rootless container (issue 21). The test makes an
unprivileged user with sub-uid and sub-gid ranges (as an operator would), gives its rootless podman
the test image, and runs `circlet serve` as that user with its embedded runner (which may not run
jobs as the server's user). A `machine` job then runs in a container of the host job image: it sees
its task directory (the checkout the agent made on the host) and writes there, and cannot see
`$CIRCLET_HOME`, the server's processes or the host's files; after it, no container of it is left.

Runs as root (CI's case), which it needs to make the user; skipped, with the reason, where the machine
cannot run rootless podman at all."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

import circlet
from circlet.agent.isolation import reachable_by_all
from circlet.secrets.keyring import KEY_FILE_NAME
from tests.agent.test_containers import CONTAINERS_CONF, ROOT, TEST_IMAGE, require_podman
from tests.conftest import free_port
from tests.e2e.helpers import Api
from tests.e2e.test_job_isolation_e2e import TRY
from tests.pipelines.helpers import make_repo

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the test makes an unprivileged user, which needs root")

USER = "circlet-rootless"
"""Kept between runs (like the job users), with its podman store: the image is imported once."""
SUBORDINATE_COUNT = 65536


def run_checked(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600, **kwargs)


def subordinate_ranges(path: Path) -> list[tuple[str, int, int]]:
    ranges = []
    for line in path.read_text().splitlines() if path.exists() else []:
        name, start, count = (line.split(":") + ["", ""])[:3]
        if start.isdigit() and count.isdigit():
            ranges.append((name, int(start), int(count)))
    return ranges


def ensure_user() -> pwd.struct_passwd:
    """The user, with a home and ranges of its own in /etc/subuid and /etc/subgid."""
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        run_checked(["useradd", "--create-home", "--shell", "/usr/sbin/nologin", USER])
        entry = pwd.getpwnam(USER)
    for table, option in ((Path("/etc/subuid"), "--add-subuids"), (Path("/etc/subgid"), "--add-subgids")):
        ranges = subordinate_ranges(table)
        if any(name in (USER, str(entry.pw_uid)) for name, _, _ in ranges):
            continue
        start = max([100000, *(first + count for _, first, count in ranges)])
        run_checked(["usermod", option, f"{start}-{start + SUBORDINATE_COUNT - 1}", USER])
    return entry


def user_environment(entry: pwd.struct_passwd, **extra: str) -> dict[str, str]:
    """A login environment of the user's: none of root's settings (``XDG_RUNTIME_DIR`` would be root's)."""
    kept = ("PATH", "LANG", "LC_ALL", "TZ")
    env = {name: os.environ[name] for name in kept if name in os.environ}
    env.update({"HOME": entry.pw_dir, "USER": entry.pw_name, "LOGNAME": entry.pw_name, **extra})
    return env


def user_python() -> tuple[str, dict[str, str]]:
    """An interpreter the user may run, with circlet and its dependencies: the test's own, unless it
    lives where other users cannot go (a pyenv in root's home); then the system's python3 of the same
    minor version, with this installation's packages on its path (as a server run with the system's
    Python would be)."""
    if reachable_by_all(Path(sys.executable).resolve().parent) is None:
        return sys.executable, {}
    system = shutil.which("python3", path="/usr/local/bin:/usr/bin:/bin")
    if system is None or reachable_by_all(Path(system).resolve().parent) is not None:
        pytest.skip("no Python that another user may run (the test's is in a private directory)")
    version = run_checked([system, "-c", "import sys; print(sys.version_info[:2])"]).stdout.strip()
    if version != str(sys.version_info[:2]):
        pytest.skip(f"the system's python3 is {version}, not the test's {sys.version_info[:2]}")
    paths = [sysconfig.get_paths()["purelib"], str(Path(circlet.__file__).resolve().parent.parent)]
    return system, {"PYTHONPATH": os.pathsep.join(paths)}


def as_user(entry: pwd.struct_passwd, argv: list[str]) -> list[str]:
    return ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--init-groups", "--", *argv]


@dataclass
class Rootless:
    entry: pwd.struct_passwd
    conf: Path

    def podman(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = user_environment(self.entry, CONTAINERS_CONF=str(self.conf))
        return subprocess.run(
            as_user(self.entry, ["podman", *args]), env=env, cwd="/", capture_output=True, text=True, timeout=600
        )


@pytest.fixture(scope="module")
def rootless() -> Iterator[Rootless]:
    require_podman()  # root's image, and the root file system tarball the user's image is made from
    missing = [tool for tool in ("newuidmap", "newgidmap", "setpriv", "useradd") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"rootless podman needs {' '.join(missing)} (apt-get install uidmap util-linux passwd)")
    entry = ensure_user()
    conf = Path(tempfile.mkdtemp(prefix="circlet-rootless-conf-")) / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    conf.parent.chmod(0o755)
    conf.chmod(0o644)
    found = Rootless(entry, conf)
    info = found.podman("info", "--format", "{{.Host.Security.Rootless}}")
    if info.returncode != 0 or info.stdout.strip() != "true":
        pytest.skip(f"rootless podman does not work for {USER} here: {(info.stderr or info.stdout).strip()[-500:]}")
    env = user_environment(entry, CONTAINERS_CONF=str(conf), CACHE_DIR="/var/cache/circlet")
    image = subprocess.run(
        as_user(entry, [str(ROOT / "scripts" / "test-image")]), env=env, cwd="/", capture_output=True, text=True
    )
    assert image.returncode == 0, image.stderr + image.stdout
    yield found
    shutil.rmtree(conf.parent, ignore_errors=True)


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path


@pytest.fixture
def server(rootless: Rootless) -> Iterator[tuple[Server, Api, str]]:
    """`circlet serve` as the user (its home, its SQLite database, its embedded runner with podman),
    with a project whose repository the user can read."""
    entry = rootless.entry
    area = Path(tempfile.mkdtemp(prefix="circlet-rootless-", dir=entry.pw_dir))
    home = area / "home"
    port = free_port()
    repo_files = {"hello.txt": "hello from the checkout\n", ".circleci/config.yml": config(home, port)}
    make_repo(area / "repo", repo_files)
    run_checked(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(area)])
    log = area / "server.log"
    python, python_path = user_python()
    env = user_environment(
        entry,
        **python_path,
        CIRCLET_HOME=str(home),
        CIRCLET_RUNNER_CONTAINER_ENGINE="podman",
        CIRCLET_RUNNER_CONTAINERS_CONF=str(rootless.conf),
        CIRCLET_RUNNER_HOST_JOB_IMAGE=TEST_IMAGE,
    )

    def admin(*args: str) -> Any:
        import json

        done = subprocess.run(
            as_user(entry, [python, "-m", "circlet.cli", "admin", *args]),
            env=env, cwd=area, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with log.open("ab") as output:
        process = subprocess.Popen(
            as_user(entry, [python, "-m", "circlet.cli", "serve", "--port", str(port), "--runner-tasks", "1"]),
            env=env,
            cwd=area,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not ready(url):
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        account = admin("bootstrap", "--org", "rootless", "--user", "alice")
        admin("project", "create", "gh/rootless/app", "--repo", str(area / "repo"))
        yield Server(url, home, process, log), Api(url, account["token"]), "gh/rootless/app"
    finally:
        process.terminate()
        process.wait(timeout=60)
        shutil.rmtree(area, ignore_errors=True)


def ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def config(home: Path, port: int) -> str:
    agent_code = Path(circlet.__file__).resolve().parent
    probe = PROBE.format(try_function=TRY, home=home, key_file=KEY_FILE_NAME, agent_code=agent_code, port=port)
    indented = "".join(f"            {line}\n" for line in probe.strip().splitlines())
    return f"""version: 2.1
jobs:
  probe:
    machine: true
    steps:
      - checkout
      - run:
          name: probe
          command: |
{indented}workflows:
  main:
    jobs: [probe]
"""


PROBE = r"""
{try_function}
H="{home}"
[ -f /run/.containerenv ] && echo "IN A CONTAINER"
echo "UID MAP $(head -n 1 /proc/self/uid_map | tr -s ' ' | sed 's/^ //')"
echo "PID 1 $(tr '\0' ' ' < /proc/1/cmdline | cut -c1-40)"
echo "CHECKOUT $(cat hello.txt)"
echo "WORKING DIRECTORY $PWD"
echo "written by the job" > made-by-job.txt && echo "WROTE $(cat made-by-job.txt)"
try read-key-file cat "$H/{key_file}"
try read-database cat "$H/circlet.db"
try list-home ls "$H"
try read-users-home ls "$(dirname "$(dirname "$H")")"
echo "WORK ROOT HOLDS $(ls -A "$(dirname "$(dirname "$HOME")")" | wc -l)"
try change-agent-code touch "{agent_code}/planted"
try reach-server-on-loopback bash -c 'exec 3<>/dev/tcp/127.0.0.1/{port}'
"""


def test_a_machine_job_of_a_non_root_server_runs_in_a_rootless_container(
    rootless: Rootless, server: tuple[Server, Api, str]
) -> None:
    live, api, slug = server
    pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = api.workflows(pipeline["id"])
    ended = api.until(lambda: (body := api.get(f"/workflow/{workflow['id']}"))["status"] != "running" and body, 240)
    job = api.jobs(workflow["id"])["probe"]
    v11 = httpx.Client(base_url=live.url + "/api/v1.1", headers=api.http.headers, timeout=30)

    def output(step: int) -> str:
        response = v11.get(f"/project/{slug}/{job['job_number']}/output/{step}/0")
        assert response.status_code == 200, response.text
        return "".join(item["message"] for item in response.json())

    checkout, probe = output(0), output(1)
    assert ended["status"] == "success", (job, checkout, probe, live.log.read_text()[-3000:])
    assert checkout.startswith(
        f"circlet runner: this machine job runs in a container of {TEST_IMAGE} (podman, rootless)"
    ), checkout
    lines = probe.splitlines()
    assert "IN A CONTAINER" in lines
    # The container's root is the server's user, and nothing more: a user namespace of its own.
    assert f"UID MAP 0 {rootless.entry.pw_uid} 1" in lines, probe
    assert any(line.startswith("PID 1 /bin/sh -c trap") for line in lines), "a process namespace of its own"
    assert "CHECKOUT hello from the checkout" in lines, "the checkout the agent made on the host"
    assert "WROTE written by the job" in lines
    denied = {line.split()[1].rstrip(":"): line for line in lines if line.startswith(("ALLOWED", "DENIED"))}
    hidden = {"read-key-file", "read-database", "list-home", "read-users-home"}
    assert set(denied) == {*hidden, "change-agent-code", "reach-server-on-loopback"}
    assert all(denied[name].startswith("DENIED") and "No such file or directory" in denied[name] for name in hidden)
    # The agent's Python is mounted for the `circleci` helpers, read-only.
    assert denied["change-agent-code"].startswith("DENIED") and "Read-only file system" in denied["change-agent-code"]
    # Its loopback is its own: the server (and a PostgreSQL) listening on the host's is not there.
    assert denied["reach-server-on-loopback"].startswith("DENIED") and "refused" in denied["reach-server-on-loopback"]
    assert "WORK ROOT HOLDS 1" in lines, "of the runner's work directory, only its own task's"
    assert (live.home / KEY_FILE_NAME).exists(), "the key file is there, on the host, out of the job's sight"
    left = rootless.podman("ps", "-a", "--filter", "label=circlet.task", "--format", "{{.Names}}")
    assert left.returncode == 0 and left.stdout.strip() == "", left.stdout + left.stderr

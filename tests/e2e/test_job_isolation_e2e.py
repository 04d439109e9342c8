"""Jobs never touch the server (issue 21), as CI runs it: as root. A real `circlet serve` (its
embedded runner runs the probing job) and a real `circlet runner` with two task slots (two jobs side
by side, one trying to get at the other); every forbidden thing is tried by the job itself and must
fail, and nothing of a job is left running after it.

The server's home, and the place the two concurrent jobs use to find each other, are outside /tmp
(under /run), so that a job sees them at their real paths and is stopped by permissions, not by its
private /tmp hiding them."""

from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import textwrap
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import create_database
from circlet.db.migrate import upgrade_to_head
from circlet.secrets.keyring import KEY_FILE_NAME
from circlet.settings import Settings
from tests.agent.test_containers import TEST_IMAGE, podman_conf, require_podman
from tests.conftest import Account, LiveServer, free_port, make_account, server_env
from tests.e2e.helpers import Api, start_runner
from tests.e2e.test_pipelines_e2e import setup_project
from tests.pipelines.helpers import make_project, make_repo, runner_token

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="jobs switch users only when the runner is root")

MARK = uuid.uuid4().hex[:12]
"""In the names of what a job leaves behind, so the test finds exactly its own."""
TRY = (
    'try() { name="$1"; shift; if out=$("$@" 2>&1); then echo "ALLOWED $name"; '
    'else echo "DENIED $name: $(echo "$out" | tail -n 1)"; fi; }'
)
"""Runs a command, and says whether it was allowed, or why not."""
REFUSALS = ("Permission denied", "Operation not permitted")
UNEXPLAINED = ("see-host-tmp", "database-url-in-env", "agent-python-first", "virtual-env-set")
"""Denied without an error message: the thing is simply not there."""


@dataclass
class Env:
    """The server and its home, the project's API, and where concurrent jobs find each other."""

    home: Path
    drop: Path
    server: LiveServer
    api: Api
    v11: httpx.Client
    slug: str

    def run(self, config: str) -> dict[str, dict[str, Any]]:
        return self.api.run_inline(self.slug, config)

    def output(self, number: int, step: int) -> str:
        response = self.v11.get(f"/project/{self.slug}/{number}/output/{step}/0")
        assert response.status_code == 200, response.text
        return "".join(item["message"] for item in response.json())


@pytest.fixture(scope="module")
def outside_tmp() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="circlet-isolation-", dir="/run"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
async def env(
    module_database_url: str, outside_tmp: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("isolation-e2e")
    area = Path(tempfile.mkdtemp(dir=outside_tmp))  # one per database backend
    area.chmod(0o755)
    home = area / "home"
    # An existing home made too wide, as an older circlet or a careless operator left it.
    (home / "orbs").mkdir(parents=True, mode=0o755)
    home.chmod(0o755)
    (home / "orbs" / "registry.json").write_text("{}")
    (home / "orbs" / "registry.json").chmod(0o644)
    drop = area / "drop"
    drop.mkdir()
    drop.chmod(0o777)  # where two concurrent jobs tell each other where they are
    database_url = module_database_url
    if database_url.startswith("sqlite"):
        database_url = f"sqlite+aiosqlite:///{home / 'circlet.db'}"  # the database in the home, as by default
        upgrade_to_head(database_url)
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url))
    server.start()
    try:
        make_repo(root / "repo", {"hello.txt": "hello\n"})
        settings = Settings(home=home, database_url=database_url)
        account, slug, token = await account_project_and_runner_token(settings, root / "repo", "iso/pair")
        runner = start_runner(server.url, token, "iso/pair", area / "work", "--max-tasks", "2")
        try:
            v11 = httpx.Client(base_url=server.url + "/api/v1.1", headers=account.headers, timeout=30)
            yield Env(home, drop, server, Api(server.url, account.token), v11, slug)
        finally:
            runner.terminate()
            runner.wait(timeout=30)
    finally:
        server.stop()


async def account_project_and_runner_token(
    settings: Settings, repo: Path, resource_class: str
) -> tuple[Account, str, str]:
    """Straight in the database, as `circlet admin` would make them (each admin process costs seconds)."""
    database = create_database(settings.resolved_database_url)
    try:
        account = await make_account(database, org="iso", login="alice")
        return account, await make_project(database, account, repo), await runner_token(database, resource_class)
    finally:
        await database.dispose()


PROBE = r"""
{try_function}
H="{home}"
AGENT=$PPID
SERVER=$(cut -d' ' -f4 /proc/$AGENT/stat)
echo "uid $(id -u) agent $AGENT server $SERVER"
try read-key-file cat "$H/{key_file}"
try read-database cat "$H/circlet.db"
try list-blobs ls "$H/blobs"
try read-orbs cat "$H/orbs/registry.json"
try list-home ls "$H"
try enter-home cd "$H"
try write-home touch "$H/planted"
try agent-environ cat /proc/$AGENT/environ
try server-environ cat /proc/$SERVER/environ
try signal-agent kill -0 $AGENT
try signal-server kill -0 $SERVER
try kill-agent kill -TERM $AGENT
try write-etc touch /etc/circlet-{mark}
try write-usr-local touch /usr/local/circlet-{mark}
try write-beside-home touch "$(dirname "$H")/circlet-{mark}"
try write-run touch /run/circlet-{mark}
try write-agent-venv touch "{site_packages}/circlet-{mark}"
try see-host-tmp test -e /tmp/host-{mark}
try database-url-in-env sh -c 'env | grep -qi -e CIRCLET_DATABASE -e CIRCLET_SECRET -e CIRCLET_RUNNER_TOKEN -e postgres'
try agent-python-first sh -c 'case "$(command -v python3)" in "{prefix}"/*) exit 0;; *) exit 1;; esac'
try virtual-env-set test -n "${{VIRTUAL_ENV:-}}${{PYTHONPATH:-}}${{PYTHONHOME:-}}"
echo private > /tmp/job-{mark} && echo "OK write-private-tmp"
test "$(stat -c %U "$HOME")" = "$(id -un)" && echo "OK owns-home"
setsid sh -c 'exec sleep 7{mark_digits}' </dev/null >/dev/null 2>&1 &
nohup sleep 8{mark_digits} </dev/null >/dev/null 2>&1 &
echo "OK daemons-started"
"""
FORBIDDEN = [
    "read-key-file", "read-database", "list-blobs", "read-orbs", "list-home", "enter-home", "write-home",
    "agent-environ", "server-environ", "signal-agent", "signal-server", "kill-agent",
    "write-etc", "write-usr-local", "write-beside-home", "write-run", "write-agent-venv", "see-host-tmp",
    "database-url-in-env", "agent-python-first", "virtual-env-set",
]  # fmt: skip
EXPECTED_OK = ["write-private-tmp", "owns-home", "daemons-started"]


def leftovers(pattern: str) -> list[str]:
    """Command lines of running processes containing ``pattern``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if pattern in command:
                found.append(command)
    return found


def test_a_job_of_the_embedded_runner_fails_at_each_forbidden_thing(env: Env) -> None:
    digits = str(int(MARK[:6], 16))
    host_marker = Path(f"/tmp/host-{MARK}")
    host_marker.write_text("the host's /tmp")
    try:
        script = PROBE.format(
            try_function=TRY,
            home=env.home,
            key_file=KEY_FILE_NAME,
            mark=MARK,
            mark_digits=digits,
            prefix=sys.prefix,
            site_packages=next(p for p in sys.path if p.endswith("site-packages")),
        )
        jobs = env.run(config({"probe": ("local", script)}))
    finally:
        host_marker.unlink()
    output = env.output(jobs["probe"]["job_number"], 0)
    assert jobs["probe"]["status"] == "success", output
    lines = output.splitlines()
    assert not lines[0].startswith("uid 0 "), output
    allowed = [line for line in lines if line.startswith("ALLOWED")]
    assert allowed == [], output
    denied = {line.split()[1].rstrip(":"): line for line in lines if line.startswith("DENIED")}
    assert sorted(denied) == sorted(FORBIDDEN), output
    for name, line in denied.items():  # by permissions, not because the path was hidden or missing
        assert name in UNEXPLAINED or any(refusal in line for refusal in REFUSALS), line
    assert [line.split()[1] for line in lines if line.startswith("OK")] == EXPECTED_OK, output
    assert not Path(f"/tmp/job-{MARK}").exists(), "the job's /tmp is its own"
    assert env.server.process is not None and env.server.process.poll() is None, "the server still runs"
    # After the job: nothing of it left running, not even what left its process group.
    assert leftovers(f"sleep 7{digits}") == [] and leftovers(f"sleep 8{digits}") == []


def test_the_home_is_owner_only(env: Env) -> None:
    """Created owner-only, and tightened at start when it was wider (the orbs directory above)."""
    wide = []
    for directory, dirs, files in os.walk(env.home):
        for name in [".", *dirs, *files]:
            path = Path(directory) / name
            mode = path.lstat().st_mode
            if not stat.S_ISLNK(mode) and mode & 0o077:
                wide.append(f"{path} {stat.filemode(mode)}")
    assert wide == []
    assert (env.home / KEY_FILE_NAME).is_file()


def test_concurrent_jobs_cannot_reach_each_other(env: Env) -> None:
    drop = env.drop
    victim = f"""
echo "$HOME" > {drop}/victim-home
echo $$ > {drop}/victim-pid
echo private > "$HOME/secret.txt"
chmod 644 "$HOME/secret.txt"
i=0; until [ -f {drop}/peer-done ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
test -f {drop}/peer-done
"""
    peer = f"""
{TRY}
i=0; until [ -f {drop}/victim-pid ] || [ $i -ge 600 ]; do sleep 0.1; i=$((i+1)); done
V=$(cat {drop}/victim-home); P=$(cat {drop}/victim-pid)
echo "peer uid $(id -u), victim pid $P"
try list-victim-home ls "$V"
try read-victim-file cat "$V/secret.txt"
try list-task-root ls "$(dirname "$(dirname "$V")")"
try victim-environ cat /proc/$P/environ
try signal-victim kill -0 $P
touch {drop}/peer-done
"""
    jobs = env.run(config({"victim": ("iso/pair", victim), "peer": ("iso/pair", peer)}))
    output = env.output(jobs["peer"]["job_number"], 0)
    assert jobs["victim"]["status"] == "success", env.output(jobs["victim"]["job_number"], 0)
    assert jobs["peer"]["status"] == "success", output
    assert "ALLOWED" not in output
    denied = [line for line in output.splitlines() if line.startswith("DENIED")]
    assert len(denied) == 5, output
    assert all(any(refusal in line for refusal in REFUSALS) for line in denied), output


def config(jobs: dict[str, tuple[str, str]]) -> str:
    """One workflow of host jobs side by side: name -> (resource class, the script of its one step)."""
    text = "version: 2.1\njobs:\n"
    for name, (resource_class, script) in jobs.items():
        text += f"  {name}:\n    machine: true\n    resource_class: {resource_class}\n    steps:\n"
        text += f"      - run:\n          name: {name}\n          command: |\n"
        text += textwrap.indent(script.strip("\n") + "\n", " " * 12)
    return text + f"workflows:\n  main:\n    jobs: [{', '.join(jobs)}]\n"


DOCKER_PROBE = r"""
{try_function}
H="{home}"
try see-home test -e "$H"
SOCKETS="/run/podman/podman.sock /var/run/docker.sock /run/docker.sock /run/user/*/podman/podman.sock"
try engine-socket sh -c "for s in $SOCKETS; do test -S \"\$s\" && exit 0; done; exit 1"
try see-agent sh -c 'grep -lE "circlet[.]runner" /proc/[0-9]*/cmdline 2>/dev/null | grep -q .'
try write-agent-python touch "{prefix}/circlet-{mark}"
echo "OK ran-in-container $(test -f /run/.containerenv && echo podman)"
"""


def test_a_docker_job_in_podman_sees_only_its_task(outside_tmp: Path, tmp_path: Path) -> None:
    """The same guarantees through the container engine: no home, no engine socket, no agent."""
    engine = require_podman()
    area = Path(tempfile.mkdtemp(dir=outside_tmp))
    area.chmod(0o755)
    home = area / "home"
    url = f"sqlite+aiosqlite:///{home / 'circlet.db'}"
    home.mkdir()
    upgrade_to_head(url)
    env = server_env(
        home,
        url,
        CIRCLET_RUNNER_CONTAINER_ENGINE="podman",
        CIRCLET_RUNNER_CONTAINERS_CONF=podman_conf(engine),
        CIRCLET_RUNNER_DOCKER="fail",
    )
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, env)
    server.start()
    try:
        script = DOCKER_PROBE.format(try_function=TRY, home=home, prefix=sys.prefix, mark=MARK)
        text = "version: 2.1\njobs:\n  probe:\n    docker: [{image: " + TEST_IMAGE + "}]\n    steps:\n"
        text += "      - run:\n          name: probe\n          command: |\n"
        text += textwrap.indent(script.strip("\n") + "\n", " " * 12)
        text += "workflows:\n  main:\n    jobs: [probe]\n"
        api, slug, _ = setup_project(server, tmp_path, text)
        pipeline = api.post(f"/project/{slug}/pipeline", 201, json={"branch": "main"})
        [workflow] = api.workflows(pipeline["id"])
        api.until(lambda: api.get(f"/workflow/{workflow['id']}")["status"] in ("success", "failed", "error"), 120)
        number = api.jobs(workflow["id"])["probe"]["job_number"]
        v11 = httpx.Client(
            base_url=server.url + "/api/v1.1", headers={"Circle-Token": api.http.headers["Circle-Token"]}
        )
        output = "".join(item["message"] for item in v11.get(f"/project/{slug}/{number}/output/0/0").json())
    finally:
        server.stop()
    assert "OK ran-in-container podman" in output, output
    assert "ALLOWED" not in output, output
    assert output.count("DENIED") == 4, output

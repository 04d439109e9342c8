"""The runner end to end (issue 6's test list): a real `circlet serve` with its embedded runner, a real
`circlet runner` process beside it, a real git repository, and every result read back through the
API (v2 for statuses, v1.1 for steps and their output), as a client would.

One server, runner and project serve the whole module (per database backend); each test sends its
own config inline (`pipeline/run` with `config.content`) so tests do not depend on one another, except
where noted. Jobs run on the host (`machine`, class `e2e/host`, the separate runner), or, for the
real-world config, as `docker` jobs on the embedded runner with `--docker host`. What the storage steps
do end to end (a cache saved by one pipeline and restored by the next, a workspace down a three-job
chain, artifacts downloaded, JUnit results listed) is in test_storage_e2e.py; the DAG, contexts,
approval, reruns and a runner killed mid-job in test_pipelines_e2e.py."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from circlet.db.engine import create_database
from circlet.settings import Settings
from tests.config.conftest import shared_config_dir
from tests.conftest import Account, LiveServer, free_port, make_account, server_env
from tests.e2e.helpers import Api, start_runner
from tests.pipelines.helpers import make_project, make_repo, runner_token

# A real-world config that needs only shell tools: checkout, then `make test|lint|docs|build` on a
# docker image (the repository made here has the Makefile).
CORPUS_CONFIG = shared_config_dir() / "corpus" / "0188.yml"
MAKEFILE = "".join(f"{target}:\n\t@echo 'make {target}: ok'\n" for target in ("test", "lint", "docs", "build"))
HOST = "machine: true\n    resource_class: e2e/host"
SECRET = "s3cr3t-project-value"
CONTEXT_SECRET = "ctx-Secret-0123456789"


@dataclass
class Env:
    server: LiveServer
    api: Api
    v11: httpx.Client
    slug: str
    """The project: a project variable and a context variable that output must never show."""
    plain: str
    """A project of the same repository without variables, so no secret to mask (see the tail test)."""
    outsider: Account

    def run(self, config: str, *, branch: str = "main") -> dict[str, dict[str, Any]]:
        """Runs ``config`` inline; returns its (one) workflow's jobs by name once the workflow has ended."""
        body = {"config": {"content": config}, "checkout": {"branch": branch}}
        pipeline = self.api.post(f"/project/{self.slug}/pipeline/run", 201, json=body)
        [workflow] = self.api.workflows(pipeline["id"])
        self.api.settled(workflow["id"], "success", "failed", "canceled", "error", "not_run")
        return self.api.jobs(workflow["id"])

    def build(self, number: int, slug: str | None = None) -> dict[str, Any]:
        response = self.v11.get(f"/project/{slug or self.slug}/{number}")
        assert response.status_code == 200, response.text
        return response.json()  # type: ignore[no-any-return]

    def steps(self, number: int, index: int = 0, slug: str | None = None) -> list[tuple[str, str]]:
        """(name, status) of each step of the job's parallel run ``index``."""
        return [(step["name"], step["actions"][index]["status"]) for step in self.build(number, slug)["steps"]]

    def output(self, number: int, step: int, index: int = 0) -> str:
        response = self.v11.get(f"/project/{self.slug}/{number}/output/{step}/{index}")
        assert response.status_code == 200, response.text
        return "".join(item["message"] for item in response.json())


@pytest.fixture(scope="module")
async def env(module_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    root = tmp_path_factory.mktemp("runner-e2e")
    home = root / "server-home"
    # Host mode everywhere: docker jobs run on the host (`--docker host`) rather than in containers of
    # whatever engine the machine has (test_docker_e2e.py is for those).
    extra = {"CIRCLET_RUNNER_CONTAINER_ENGINE": "none"}
    server = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, module_database_url, **extra))
    server.start()
    runner: subprocess.Popen[bytes] | None = None
    try:
        corpus = CORPUS_CONFIG.read_text() if CORPUS_CONFIG.is_file() else "version: 2.1\n"
        tests = {f"t/{name}_test.py": f"# {name}\n" for name in "abcd"}
        make_repo(
            root / "repo", {".circleci/config.yml": corpus, "Makefile": MAKEFILE, "hello.txt": "hello\n", **tests}
        )
        # Accounts, the project and a runner token straight in the database, as `circlet admin` would
        # make them: each `circlet admin` process costs seconds of imports.
        database = create_database(Settings(home=home, database_url=module_database_url).resolved_database_url)
        try:
            account = await make_account(database, org="e2e", login="alice")
            outsider = await make_account(database)
            slug = await make_project(database, account, root / "repo")
            plain = await make_project(database, account, root / "repo", name="plain")
            token = await runner_token(database, "e2e/host")
        finally:
            await database.dispose()
        runner = start_runner(server.url, token, "e2e/host", root / "work", "--max-tasks", "4")
        api = Api(server.url, account.token)
        api.post(f"/project/{slug}/envvar", 201, json={"name": "E2E_SECRET", "value": SECRET})
        context = api.post("/context", 200, json={"name": "e2e-ctx", "owner": {"id": account.org_id}})
        put = api.http.put(f"/context/{context['id']}/environment-variable/CTX_SECRET", json={"value": CONTEXT_SECRET})
        assert put.status_code == 200, put.text
        v11 = httpx.Client(base_url=server.url + "/api/v1.1", headers=account.headers, timeout=30)
        yield Env(server, api, v11, slug, plain, outsider)
    finally:
        if runner is not None:
            runner.terminate()
            runner.wait(timeout=30)
        server.stop()


# -- steps ----------------------------------------------------------------------------------------


def test_checkout_step(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  co:
    {HOST}
    steps:
      - checkout: {{path: src}}
      - run: |
          test "$(git -C src rev-parse HEAD)" = "$CIRCLE_SHA1"
          cat src/hello.txt && git -C src branch --show-current
workflows: {{main: {{jobs: [co]}}}}
""")
    number = jobs["co"]["job_number"]
    assert jobs["co"]["status"] == "success", env.steps(number)
    steps = env.steps(number)
    assert steps[0] == ("Checkout code", "success") and steps[1][1] == "success"
    assert env.output(number, 1) == "hello\nmain\n"


def test_run_step(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  r:
    {HOST}
    environment: {{FROM_JOB: job}}
    steps:
      - run: {{name: env, working_directory: ~/sub, environment: {{FROM_STEP: step}},
               command: 'echo "$FROM_STEP $FROM_JOB $(basename "$PWD")"'}}
      - run: {{name: python, shell: python3, command: 'print("py", 6 * 7)'}}
      - run: {{name: bg, background: true, command: 'sleep 0.3; echo bg-done > ~/bg.txt'}}
      - run: {{name: wait, command: 'until [ -f ~/bg.txt ]; do sleep 0.05; done; cat ~/bg.txt'}}
      - run: {{name: fail, command: 'echo failing; exit 3'}}
      - run: {{name: skipped, command: echo nope}}
      - run: {{name: rescue, command: echo rescued, when: on_fail}}
      - run: {{name: last, command: echo always, when: always}}
workflows: {{main: {{jobs: [r]}}}}
""")
    number = jobs["r"]["job_number"]
    assert jobs["r"]["status"] == "failed"
    assert env.steps(number) == [
        ("env", "success"),
        ("python", "success"),
        ("bg", "success"),
        ("wait", "success"),
        ("fail", "failed"),
        ("skipped", "not_run"),
        ("rescue", "success"),
        ("last", "success"),
    ]
    assert env.build(number)["steps"][4]["actions"][0]["exit_code"] == 3
    outputs = [env.output(number, step) for step in (0, 1, 3, 4, 6, 7)]
    assert outputs == ["step job sub\n", "py 42\n", "bg-done\n", "failing\n", "rescued\n", "always\n"]


def test_when_and_unless_steps(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  w:
    {HOST}
    steps:
      - when:
          condition: {{equal: [main, << pipeline.git.branch >>]}}
          steps: [{{run: echo when-main}}]
      - unless:
          condition: {{equal: [main, << pipeline.git.branch >>]}}
          steps: [{{run: echo unless-main}}]
      - run: echo end
workflows: {{main: {{jobs: [w]}}}}
""")
    number = jobs["w"]["job_number"]
    assert jobs["w"]["status"] == "success"
    everything = "".join(env.output(number, step) for step in range(len(env.steps(number))))
    assert "when-main\n" in everything and "unless-main" not in everything and everything.endswith("end\n")


def test_add_ssh_keys_step(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  any-key:
    {HOST}
    steps: [add_ssh_keys, {{run: echo next}}]
  unknown-key:
    {HOST}
    steps: [{{add_ssh_keys: {{fingerprints: ["SHA256:AAAAnotakeyofthisproject"]}}}}, {{run: echo next}}]
workflows: {{main: {{jobs: [any-key, unknown-key]}}}}
""")
    # The server has no "additional SSH keys" for a project to hand out: none to add, and a named
    # one is refused by name.
    number = jobs["any-key"]["job_number"]
    assert jobs["any-key"]["status"] == "success"
    assert env.output(number, 0) == "add_ssh_keys: this project has no SSH keys; nothing to add\n"
    number = jobs["unknown-key"]["job_number"]
    assert jobs["unknown-key"]["status"] == "failed"
    assert env.steps(number)[1][1] == "not_run"
    assert env.output(number, 0) == (
        "add_ssh_keys: this project has no SSH key with fingerprint SHA256:AAAAnotakeyofthisproject\n"
    )


def test_setup_remote_docker_without_an_engine(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  d:
    {HOST}
    environment: {{DOCKER_HOST: "unix:///nonexistent/docker.sock"}}
    steps: [setup_remote_docker, {{run: docker build .}}]
workflows: {{main: {{jobs: [d]}}}}
""")
    number = jobs["d"]["job_number"]
    assert jobs["d"]["status"] == "failed"
    assert env.steps(number)[1][1] == "not_run"
    assert env.output(number, 0).startswith(
        "setup_remote_docker: this runner has no Docker engine (docker info failed: "
    )


def test_circleci_agent_step_halt(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  h:
    {HOST}
    steps:
      - run: echo before; circleci-agent step halt; echo rest of the step
      - run: echo never
      - run: {{command: echo never either, when: always}}
workflows: {{main: {{jobs: [h]}}}}
""")
    number = jobs["h"]["job_number"]
    assert jobs["h"]["status"] == "success"
    assert [status for _, status in env.steps(number)] == ["success", "not_run", "not_run"]
    halted = env.output(number, 0)
    assert halted.startswith("before\n") and halted.endswith("rest of the step\n") and "halt" in halted


# -- the job's environment and tools -----------------------------------------------------------------


def test_parallelism_three(env: Env) -> None:
    jobs = env.run(f"""
version: 2.1
jobs:
  p:
    {HOST}
    parallelism: 3
    steps: [{{run: 'echo "node $CIRCLE_NODE_INDEX of $CIRCLE_NODE_TOTAL"'}}]
workflows: {{main: {{jobs: [p]}}}}
""")
    number = jobs["p"]["job_number"]
    assert jobs["p"]["status"] == "success"
    details = env.api.get(f"/project/{env.slug}/job/{number}")
    assert details["parallelism"] == 3
    assert sorted((run["index"], run["status"]) for run in details["parallel_runs"]) == [
        (0, "success"),
        (1, "success"),
        (2, "success"),
    ]
    assert [env.output(number, 0, index) for index in range(3)] == [f"node {i} of 3\n" for i in range(3)]


TIMINGS_JUNIT = "".join(
    f'<testcase file="t/{name}_test.py" classname="{name}" name="t" time="{seconds}"/>'
    for name, seconds in (("a", 9), ("b", 1), ("c", 1), ("d", 7))
)


def test_tests_split_by_timings(env: Env) -> None:
    # The first pipeline stores results with real timings; the next one splits by them.
    store = env.run(f"""
version: 2.1
jobs:
  results:
    {HOST}
    steps:
      - run: mkdir -p r && echo '<testsuite>{TIMINGS_JUNIT}</testsuite>' > r/junit.xml
      - store_test_results: {{path: r}}
workflows: {{main: {{jobs: [results]}}}}
""")
    assert store["results"]["status"] == "success"
    jobs = env.run(f"""
version: 2.1
jobs:
  split:
    {HOST}
    parallelism: 2
    steps:
      - checkout
      - run: circleci tests glob "t/*.py" | circleci tests split --split-by=timings
workflows: {{main: {{jobs: [split]}}}}
""")
    number = jobs["split"]["job_number"]
    assert jobs["split"]["status"] == "success"
    # 9 s, then 7, 1 and 1 each to the node with the least so far (by name it would be a+c, b+d).
    shares = [env.output(number, 1, index) for index in range(2)]
    assert [[line for line in share.splitlines() if line.startswith("t/")] for share in shares] == [
        ["t/a_test.py"],
        ["t/b_test.py", "t/c_test.py", "t/d_test.py"],
    ]


MASKING_WRITER = """
import os, sys
out = sys.stdout.buffer
secret = os.environ["CTX_SECRET"].encode()
# A secret across the runner's 64 KiB read size and upload batches: written at once, read in two.
out.write(b"x" * (64 * 1024 - 3) + secret + b"\\n" + b"y" * (64 * 1024 - 9) + secret + b"\\n")
out.flush()
"""


def test_secrets_are_masked_across_writes_and_chunks(env: Env) -> None:
    jobs = env.run(
        f"""
version: 2.1
jobs:
  m:
    {HOST}
    steps:
      - run: |
          printf 'before %s' "${{E2E_SECRET:0:4}}"
          sleep 0.4
          printf '%s after\\n' "${{E2E_SECRET:4}}"
          printf '%s' "${{CTX_SECRET:0:10}}"; sleep 0.3; printf '%s' "${{CTX_SECRET:10:5}}"; sleep 0.3
          printf '%s|\\n' "${{CTX_SECRET:15}}"
      - run:
          shell: python3
          command: {json.dumps(MASKING_WRITER)}
workflows: {{main: {{jobs: [{{m: {{context: [e2e-ctx]}}}}]}}}}
"""
    )
    number = jobs["m"]["job_number"]
    assert jobs["m"]["status"] == "success", env.steps(number)
    first = env.output(number, 0)
    assert first == "before ******** after\n********|\n"
    lines = env.output(number, 1).splitlines()
    assert lines == ["x" * (64 * 1024 - 3) + "********", "y" * (64 * 1024 - 9) + "********"]
    tail = env.v11.get(f"/project/{env.slug}/{number}/output/0/0/stream").text
    for secret in (SECRET, CONTEXT_SECRET):
        assert secret[:8] not in first + tail


def test_no_output_timeout(env: Env) -> None:
    started = time.monotonic()
    jobs = env.run(f"""
version: 2.1
jobs:
  quiet:
    {HOST}
    steps: [{{run: {{name: quiet, command: echo start; sleep 60, no_output_timeout: 1s}}}}]
workflows: {{main: {{jobs: [quiet]}}}}
""")
    assert time.monotonic() - started < 20
    number = jobs["quiet"]["job_number"]
    assert jobs["quiet"]["status"] == "timedout"
    assert env.steps(number) == [("quiet", "timedout")]
    assert env.output(number, 0).startswith("start\n")
    assert "Too long with no output (exceeded 1s)" in env.output(number, 0)


# -- a running job: the live tail, cancel ---------------------------------------------------------


def start(env: Env, slug: str, config: str) -> tuple[str, dict[str, Any]]:
    """Runs ``config`` inline; returns the workflow id and its one job once that job is running."""
    body = {"config": {"content": config}, "checkout": {"branch": "main"}}
    pipeline = env.api.post(f"/project/{slug}/pipeline/run", 201, json=body)
    [workflow] = env.api.workflows(pipeline["id"])
    job = env.api.until(
        lambda: next((j for j in env.api.jobs(workflow["id"]).values() if j["status"] == "running"), None)
    )
    return workflow["id"], job


def sse(lines: Iterator[str]) -> Iterator[tuple[str, int | None, dict[str, Any]]]:
    """(event, id, data) of a server-sent event stream, comments skipped."""
    fields: dict[str, str] = {}
    for line in lines:
        if line == "":
            if "event" in fields:
                yield fields["event"], int(fields["id"]) if "id" in fields else None, json.loads(fields["data"])
            fields = {}
        elif not line.startswith(":"):
            key, _, value = line.partition(": ")
            fields[key] = value


# In a project with secrets the runner's masking must still let short lines through at once.
@pytest.mark.parametrize("project", ["plain", "secrets"])
def test_live_tail_of_a_running_step(env: Env, project: str) -> None:
    slug = env.plain if project == "plain" else env.slug
    _, job = start(
        env,
        slug,
        f"""
version: 2.1
jobs:
  counting:
    {HOST}
    steps: [{{run: {{name: count, command: 'for i in 1 2 3; do echo $i; sleep 1; done'}}}}]
workflows: {{main: {{jobs: [counting]}}}}
""",
    )
    path = f"/project/{slug}/{job['job_number']}/output/0/0/stream"
    received: list[tuple[float, str, int | None, dict[str, Any]]] = []
    with env.v11.stream("GET", path, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for kind, event_id, data in sse(response.iter_lines()):
            received.append((time.monotonic(), kind, event_id, data))
            if kind == "end":
                break
    output = [(when, event_id, data) for when, kind, event_id, data in received if kind == "output"]
    assert "".join(data["message"] for _, _, data in output) == "1\n2\n3\n"
    assert received[-1][1:] == ("end", None, {"status": "success", "exit_code": 0})
    # Lines came as they were printed, a second apart, not all at the end.
    assert received[-1][0] - output[0][0] > 1.5
    assert output[-1][0] - output[0][0] > 0.8

    # A reconnect after the first event gets what followed it, once.
    first_id = output[0][1]
    assert first_id is not None
    again = env.v11.get(path, headers={"Last-Event-ID": str(first_id)}).text
    replay = list(sse(iter(again.splitlines())))
    assert "".join(data["message"] for kind, _, data in replay if kind == "output") == "1\n2\n3\n".removeprefix(
        output[0][2]["message"]
    )
    assert [event_id for kind, event_id, _ in replay if kind == "output"] == [e for _, e, _ in output[1:]]
    assert replay[-1][0] == "end"

    # Another organization's token cannot see it; no token is a 401; both are JSON.
    refused = httpx.get(env.server.url + "/api/v1.1" + path, headers=env.outsider.headers)
    assert refused.status_code == 404 and "message" in refused.json()
    anonymous = httpx.get(env.server.url + "/api/v1.1" + path)
    assert anonymous.status_code == 401 and "message" in anonymous.json()


def test_cancel_a_running_sleep(env: Env) -> None:
    workflow_id, job = start(
        env,
        env.plain,
        f"""
version: 2.1
jobs:
  sleeper:
    {HOST}
    steps: [{{run: {{name: sleep, command: 'echo "pid=$$"; exec sleep 300'}}}}]
workflows: {{main: {{jobs: [sleeper]}}}}
""",
    )
    number = job["job_number"]
    # The step's pid, from its output while it runs (`exec`: the shell's pid is the sleep's).
    with env.v11.stream("GET", f"/project/{env.plain}/{number}/output/0/0/stream", timeout=30) as response:
        kind, _, data = next(sse(response.iter_lines()))
    assert kind == "output" and data["message"].startswith("pid=")
    pid = int(data["message"].strip().removeprefix("pid="))
    cmdline = Path(f"/proc/{pid}/cmdline")
    env.api.until(lambda: cmdline.read_bytes().split(b"\0")[:2] == [b"sleep", b"300"], timeout=5)

    env.api.post(f"/project/{env.plain}/job/{number}/cancel", 200)
    env.api.until(lambda: env.api.jobs(workflow_id)["sleeper"]["status"] == "canceled", timeout=15)
    assert env.steps(number, slug=env.plain) == [("sleep", "canceled")]
    env.api.until(
        lambda: not cmdline.exists() or b"sleep" not in cmdline.read_bytes(),  # gone, or a reaped pid reused
        timeout=10,
    )


# -- a real-world config ----------------------------------------------------------------------------


def test_a_real_world_config_runs_with_docker_host(env: Env) -> None:
    """The corpus config is the project's own `.circleci/config.yml`: a `docker` job the embedded
    runner (`--docker host`, its default) runs on the host."""
    if not CORPUS_CONFIG.is_file():
        pytest.skip(f"shared config material not found at {CORPUS_CONFIG} (set CIRCLET_SHARED_DIR)")
    pipeline = env.api.post(f"/project/{env.slug}/pipeline", 201, json={"branch": "main"})
    [workflow] = env.api.workflows(pipeline["id"])
    assert env.api.settled(workflow["id"], "success", "failed")["status"] == "success", env.api.jobs(workflow["id"])
    number = env.api.jobs(workflow["id"])["build"]["job_number"]
    assert env.steps(number) == [
        ("Checkout code", "success"),
        ("Run tests", "success"),
        ("Run Lint", "success"),
        ("Build documentation", "success"),
        ("Build package", "success"),
    ]
    assert "--docker host" in env.output(number, 0)
    assert [env.output(number, step) for step in range(1, 5)] == [
        f"make {target}: ok\n" for target in ("test", "lint", "docs", "build")
    ]

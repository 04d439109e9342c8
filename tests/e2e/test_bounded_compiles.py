"""No config can take the server down: abusive configs sent through `pipeline/run` to a real
`circlet serve` end `errored` naming the limit, while `/healthz` and another organization's API keep
answering; a compile killed with its server is retried a bounded number of times."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.config.test_limits import chain
from tests.conftest import LiveServer, free_port, server_env
from tests.e2e.helpers import Api
from tests.pipelines.helpers import make_repo

MAX_LATENCY_SECONDS = 0.2
# A server's first seconds have one-off pauses unrelated to compiles (seen with no compile at all):
# latencies are measured from then on.
WARM_UP_SECONDS = 3.0
# Past the expansion limits, so that what stops a compile is the timeout, the memory cap or a kill.
RAISED_LIMITS = {
    "CIRCLET_LIMITS__MATRIX_COMBINATIONS": "10000000",
    "CIRCLET_LIMITS__JOBS_PER_WORKFLOW": "10000000",
    "CIRCLET_LIMITS__JOBS_PER_PIPELINE": "10000000",
}
ONE_JOB = """
version: 2.1
jobs:
  build: {docker: [{image: x}], steps: [{run: echo ok}]}
workflows:
  w:
    jobs: [build]
"""


def matrix_config(a: int, b: int, job_parameter_type: str = "string") -> str:
    """A one-job config whose matrix has ``a`` × ``b`` combinations (about 8 KB for 1000 × 1000)."""
    return f"""
version: 2.1
jobs:
  build:
    docker: [{{image: x}}]
    parameters: {{a: {{type: {job_parameter_type}}}, b: {{type: {job_parameter_type}}}}}
    steps: [{{run: echo << parameters.a >> << parameters.b >>}}]
workflows:
  w:
    jobs:
      - build:
          matrix:
            parameters:
              a: [{", ".join(str(n) for n in range(a))}]
              b: [{", ".join(str(n) for n in range(b))}]
"""


def big_output_config() -> str:
    """400 jobs, each 30 steps of a 1 KB command: about 12 MB compiled, from a 4 KB config."""
    command = "x" * 1000
    return f"""
version: 2.1
commands:
  ten:
    steps: [{", ".join([f"{{run: echo {command}}}"] * 10)}]
jobs:
  build:
    docker: [{{image: x}}]
    parameters: {{a: {{type: integer}}}}
    steps: [ten, ten, ten]
workflows:
  w:
    jobs:
      - build: {{matrix: {{parameters: {{a: [{", ".join(str(n) for n in range(400))}]}}}}}}
"""


class Prober:
    """Times `/healthz` and another organization's `GET /me`, over and over, on a thread."""

    def __init__(self, server: LiveServer, token: str) -> None:
        self.server, self.token = server, token
        self.latencies: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> Prober:
        self._thread.start()
        time.sleep(WARM_UP_SECONDS)
        self.latencies.clear()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with httpx.Client(base_url=self.server.url, timeout=30) as client:
            while not self._stop.is_set():
                for path, headers in (("/healthz", {}), ("/api/v2/me", {"Circle-Token": self.token})):
                    started = time.perf_counter()
                    response = client.get(path, headers=headers)
                    self.latencies.append(time.perf_counter() - started)
                    assert response.status_code == 200
                time.sleep(0.01)


def start_server(database_url: str, home: Path, **settings: str) -> LiveServer:
    live = LiveServer(f"http://127.0.0.1:{free_port()}", home, server_env(home, database_url, **settings))
    live.start()
    return live


@pytest.fixture
def make_server(database_url: str, tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    started: list[LiveServer] = []

    def make(**settings: str) -> LiveServer:
        started.append(start_server(database_url, tmp_path / f"home-{len(started)}", **settings))
        return started[-1]

    yield make
    for server in started:
        server.stop()


def two_orgs(server: LiveServer, tmp_path: Path) -> tuple[Api, str, str]:
    """The abuser's API and project, and another organization's token."""
    abuser = server.admin("bootstrap", "--org", "abuser", "--user", "mallory")
    other = server.admin("bootstrap", "--org", "bystander", "--user", "bob")
    repo = tmp_path / "repo"
    if not repo.exists():
        make_repo(repo, {".circleci/config.yml": ONE_JOB})
    server.admin("project", "create", "gh/abuser/app", "--repo", str(repo))
    return Api(server.url, abuser["token"]), "gh/abuser/app", other["token"]


def run_inline(api: Api, slug: str, config: str) -> str:
    return str(api.post(f"/project/{slug}/pipeline/run", 201, json={"config": {"content": config}})["id"])


def errored(api: Api, pipeline_id: str, timeout: float = 60.0) -> str:
    body = api.until(lambda: (p := api.get(f"/pipeline/{pipeline_id}"))["state"] != "pending" and p, timeout)
    assert body["state"] == "errored", body
    return "\n".join(error["message"] for error in body["errors"])


def test_abusive_configs_end_errored_naming_the_limit_while_others_are_served(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = make_server()
    api, slug, bystander = two_orgs(server, tmp_path)
    cases = {
        matrix_config(1000, 1000): ("matrix combinations (1000000)", "matrix_combinations"),
        matrix_config(100, 100, "boolean"): ("matrix combinations (10000)", "matrix_combinations"),
        chain(60): ("commands nested in commands", "nesting_depth"),
        chain(25, fan_out=2): ("steps in a pipeline", "steps_per_pipeline"),
        big_output_config(): ("compiled config size in bytes", "compiled_config_bytes"),
    }
    with Prober(server, bystander) as prober:
        for _round in range(3):
            pipelines = {run_inline(api, slug, config): expected for config, expected in cases.items()}
            for pipeline_id, (what, setting) in pipelines.items():
                message = errored(api, pipeline_id)
                assert what in message and f"({setting})" in message, message
                assert message.startswith(".circleci/config.yml:"), message  # file:line:column: ...
    assert len(prober.latencies) > 20
    assert max(prober.latencies) < MAX_LATENCY_SECONDS, sorted(prober.latencies)[-5:]
    fine = run_inline(api, slug, ONE_JOB)
    api.until(lambda: api.get(f"/pipeline/{fine}")["state"] == "created")


def test_a_compile_past_the_timeout_or_the_memory_ceiling_is_killed_and_reported(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    slow = make_server(CIRCLET_COMPILE_TIMEOUT_SECONDS="2", CIRCLET_COMPILE_MEMORY_MB="0", **RAISED_LIMITS)
    api, slug, bystander = two_orgs(slow, tmp_path)
    with Prober(slow, bystander) as prober:
        pipeline_id = run_inline(api, slug, matrix_config(1000, 1000))
        message = errored(api, pipeline_id)
    assert "longer than the limit of 2 s (compile_timeout_seconds)" in message
    assert api.get(f"/pipeline/{pipeline_id}")["errors"][0]["type"] == "timeout"
    assert max(prober.latencies) < MAX_LATENCY_SECONDS, sorted(prober.latencies)[-5:]
    slow.stop()

    small = make_server(CIRCLET_COMPILE_TIMEOUT_SECONDS="120", CIRCLET_COMPILE_MEMORY_MB="300", **RAISED_LIMITS)
    api = Api(small.url, api.http.headers["Circle-Token"])  # the same database
    message = errored(api, run_inline(api, slug, matrix_config(1000, 1000)), timeout=120)
    assert "compile_memory_mb" in message or "stopped before it finished" in message, message
    fine = run_inline(api, slug, ONE_JOB)  # the worker that ran out was replaced
    api.until(lambda: api.get(f"/pipeline/{fine}")["state"] == "created")


def compile_workers_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if parent == pid and b"circlet.engine.compiling" in command:
                found.add(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_compile_interrupted_by_every_restart_ends_errored_and_startup_answers_at_once(
    make_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    settings = {
        **RAISED_LIMITS,
        "CIRCLET_COMPILE_TIMEOUT_SECONDS": "600",
        "CIRCLET_COMPILE_MEMORY_MB": "0",
        "CIRCLET_COMPILE_ATTEMPTS": "2",
        "CIRCLET_COMPILE_RETRY_AFTER_SECONDS": "1",
    }
    server = make_server(**settings)
    api, slug, bystander = two_orgs(server, tmp_path)
    pipeline_id = run_inline(api, slug, matrix_config(1000, 1000))
    for _attempt in range(2):
        assert server.process is not None
        workers = compile_workers_of(server.process.pid)
        assert workers
        time.sleep(1.5)  # the compile is under way (the workers were started with the server)
        server.stop(kill=True)
        deadline = time.monotonic() + 5
        while any(alive(worker) for worker in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(alive(worker) for worker in workers), "a compile worker outlived its server"

        started = time.monotonic()
        server.start()
        assert time.monotonic() - started < 10
        for path, headers in (("/healthz", {}), ("/api/v2/me", {"Circle-Token": bystander})):
            probe_started = time.perf_counter()
            assert httpx.get(server.url + path, headers=headers, timeout=5).status_code == 200
            # The old compile would take minutes: a second (a cold process, a shared machine) waits on none of it.
            assert time.perf_counter() - probe_started < 1.0
        assert api.get(f"/pipeline/{pipeline_id}")["state"] in ("pending", "errored")
    message = errored(api, pipeline_id, timeout=30)
    assert "compilation did not finish" in message and "(compile_attempts)" in message

"""A setup job's ``curl`` sends the continuation orbs' call to the runner's server, with the real curl
and a real HTTP server; any other curl call, and every job that is not a setup job, is untouched."""

from __future__ import annotations

import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.conftest import execute, make_task, run_step

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")


class Recorder(http.server.BaseHTTPRequestHandler):
    requests: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"] or 0))
        self.requests.append(("POST", self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"message":"Pipeline continued."}')

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    requests: list[tuple[str, str, bytes]] = []
    handler = type("Handler", (Recorder,), {"requests": requests})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", requests
    httpd.shutdown()
    httpd.server_close()


def continue_step(domain: str) -> dict[str, object]:
    """The orb's call, as ``circleci/continuation`` makes it (the domain in the step's environment)."""
    command = (
        "code=$(curl -s -o /dev/stderr -w '%{http_code}' -XPOST -H 'Content-Type: application/json' "
        '--data \'{"continuation-key": "k"}\' "https://${CIRCLECI_DOMAIN}/api/v2/pipeline/continue"); '
        'echo "status $code"'
    )
    return run_step(command, environment={"CIRCLECI_DOMAIN": domain})


async def test_a_setup_jobs_continuation_reaches_the_runners_server(
    work_root: Path, server: tuple[str, list[tuple[str, str, bytes]]]
) -> None:
    url, requests = server
    steps = [
        continue_step("circleci.com"),
        run_step("curl -s -XPOST https://circleci.com/api/v2/pipeline/continue --data x >/dev/null; echo $?"),
        run_step(f"curl -s -XPOST {url}elsewhere --data y; echo"),
    ]
    environment = {"CIRCLE_CONTINUATION_KEY": "k"}
    run = await execute(make_task(steps, environment=environment), work_root, server_url=url)
    assert run.result.status == "success", run.sink.outputs
    assert run.sink.output(0) == '{"message":"Pipeline continued."}status 200\n'
    assert requests == [
        ("POST", "/api/v2/pipeline/continue", b'{"continuation-key": "k"}'),
        ("POST", "/api/v2/pipeline/continue", b"x"),
        ("POST", "/elsewhere", b"y"),  # any other URL is the real curl's own
    ]


async def test_a_server_install_domain_is_rewritten_too(
    work_root: Path, server: tuple[str, list[tuple[str, str, bytes]]]
) -> None:
    url, requests = server
    steps = [continue_step("ci.example.com")]
    run = await execute(make_task(steps, environment={"CIRCLE_CONTINUATION_KEY": "k"}), work_root, server_url=url)
    assert run.result.status == "success", run.sink.outputs
    assert [path for _, path, _ in requests] == ["/api/v2/pipeline/continue"]


async def test_other_jobs_get_the_real_curl(work_root: Path, server: tuple[str, list[tuple[str, str, bytes]]]) -> None:
    url, _ = server
    run = await execute(make_task([run_step("command -v curl")]), work_root, server_url=url)
    assert run.sink.output(0) == f"{shutil.which('curl')}\n"

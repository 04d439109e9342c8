"""Shared pieces of the API benchmarks (bench/api_contexts.py, bench/api_accounts.py): tools, the
servers under test (circlet, the bare ASGI baseline, Stoplight's Prism mock), wrk runs and their
parsing, the server's CPU time per request.

Traffic goes to 127.0.0.1 only. Needs ``wrk`` (``apt-get install -y wrk``) and ``taskset``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
CONNECTIONS = 32


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    bad_responses: int
    socket_errors: int
    cpu_us: float = 0.0  # the server's CPU time per request: unlike req/s, not skewed by other load


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process, all threads, from /proc (0 where there is none)."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    except OSError:
        return 0.0
    return total / os.sysconf("SC_CLK_TCK")


def fail(message: str, status: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(status)


def require_tools() -> tuple[str, str]:
    wrk = shutil.which("wrk")
    if wrk is None:
        fail("wrk is not installed; install it with: apt-get install -y wrk")
    taskset = shutil.which("taskset")
    if taskset is None:
        fail("taskset is not installed; install it with: apt-get install -y util-linux")
    circlet = shutil.which("circlet", path=str(Path(sys.executable).parent)) or shutil.which("circlet")
    if circlet is None:
        fail("the circlet command is not on PATH; install the package (pip install -e .) first")
    return wrk, taskset  # type: ignore[return-value]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, token: str | None = None, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if token:
        request.add_header("Circle-Token", token)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


# -- setup ---------------------------------------------------------------------------------------------


def bootstrap(env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "circlet.cli", "admin", "bootstrap", "--org", "acme", "--user", "alice"]
    return json.loads(subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout)


# -- servers ----------------------------------------------------------------------------------------


class Server:
    """A server process for the ``with`` block. ``group``: the process leads its own process group,
    and stopping it signals the whole group (for commands that may be wrappers or fork, e.g. Prism)."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, log: Path, group: bool = False):
        self.name, self.command, self.env, self.port, self.log = name, command, env, port, log
        self.group = group
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=self.group
            )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    fail(f"{self.name} exited: {self.log.read_text()[-2000:]}")
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.05)
            fail(f"{self.name} did not start listening on port {self.port}")
        except BaseException:
            self.__exit__()
            raise
        raise AssertionError  # unreachable

    def __exit__(self, *_exc: object) -> None:
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        if not self.group:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            return
        # The group's id is the leader's pid, ours until the leader is reaped: wait for the leader to
        # exit without reaping it, kill whatever is left in its group, then reap it.
        _killpg(process.pid, signal.SIGINT)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None:
                break
            time.sleep(0.05)
        _killpg(process.pid, signal.SIGKILL)
        process.wait()


def _killpg(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signum)


# -- load -------------------------------------------------------------------------------------------

_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _duration_ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT_MS[unit]


def parse_wrk(output: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _duration_ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _duration_ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return Result(
        rps, p50, p99, requests, int(bad.group(1)) if bad else 0, sum(map(int, errors.groups())) if errors else 0
    )


def write_lua(directory: Path, name: str, token: str, method: str = "GET", body: Any = None) -> Path:
    lines = [f'wrk.method = "{method}"', f'wrk.headers["Circle-Token"] = "{token}"']
    if body is not None:
        lines += ['wrk.headers["Content-Type"] = "application/json"', f"wrk.body = {json.dumps(json.dumps(body))}"]
    path = directory / f"{name}.lua"
    path.write_text("\n".join(lines) + "\n")
    return path


def load(
    wrk: str, taskset: str, server: Server, path: str, script: Path, duration: int, warmup: int, pin: bool
) -> Result:
    url = server.url + path

    def run(seconds: int) -> str:
        command = [wrk, "-t1", f"-c{CONNECTIONS}", f"-d{seconds}s", "--latency", "-s", str(script), url]
        if pin:
            command = [taskset, "-c", "0", *command]
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout

    if warmup:
        run(warmup)
    assert server.process is not None
    cpu_before = cpu_seconds(server.process.pid)
    output = run(duration)
    cpu_used = cpu_seconds(server.process.pid) - cpu_before
    result = parse_wrk(output)
    if result.requests == 0:
        fail(f"{url}: no request completed:\n{output}")
    result.cpu_us = cpu_used * 1e6 / result.requests
    return result


def check(url: str, token: str, method: str = "GET", body: Any = None) -> Any:
    status, answer = http(method, url, token, body)
    if status != 200:
        fail(f"{method} {url}: {status} {answer}")
    return answer


def wait_until_answers(server: Server, path: str, token: str, timeout: float = 30.0) -> Any:
    """``GET path`` until the server answers 200 (it may listen before it is ready); its answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, answer = http("GET", server.url + path, token)
        except (OSError, ValueError) as exc:
            status, answer = 0, repr(exc)
        if status == 200:
            return answer
        assert server.process is not None
        if server.process.poll() is not None:
            fail(f"{server.name} exited: {server.log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            fail(f"{server.name}: GET {path} did not answer 200 in {timeout:.0f} s: {status} {answer}")
        time.sleep(0.2)


def bench_env(home: Path, **limits: str) -> dict[str, str]:
    """The environment of a benchmark's ``circlet`` commands: a fresh ``CIRCLET_HOME``, and a rate limit
    that still runs on every request but that wrk at full speed does not reach."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)  # admin commands make no home of their own
    env = {k: v for k, v in os.environ.items() if not k.startswith("CIRCLET_")}
    env |= {"CIRCLET_HOME": str(home), "CIRCLET_RATE_LIMIT_PER_MINUTE": str(1_000_000_000)}
    return env | limits


def circlet_server(work: Path, env: dict[str, str], pin: bool, taskset: str) -> Server:
    """``circlet serve --no-access-log`` (uvicorn, uvloop, httptools, one worker), pinned to core 1."""
    port = free_port()
    pinned = [taskset, "-c", "1"] if pin else []
    command = [*pinned, sys.executable, "-m", "circlet.cli", "serve", "--port", str(port), "--no-access-log"]
    return Server("circlet serve", command, env, port, work / "circlet.log")


def baseline_server(work: Path, env: dict[str, str], pin: bool, taskset: str) -> Server:
    """``bench/baseline_asgi.py`` served by uvicorn with the same settings, pinned the same way."""
    port = free_port()
    pinned = [taskset, "-c", "1"] if pin else []
    command = [
        *pinned,
        sys.executable,
        "-m",
        "uvicorn",
        "baseline_asgi:app",
        "--app-dir",
        str(BENCH_DIR),
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--workers",
        "1",
        "--no-access-log",
        "--no-server-header",
        "--log-level",
        "warning",
    ]
    return Server("baseline", command, env, port, work / "baseline.log")


def prism_server(work: Path, prism: str, spec: Path, pin: bool, taskset: str) -> Server:
    """Stoplight's Prism (``prism mock``) serving ``spec`` with its static examples (the default mode),
    pinned the same way. ``--verboseLevel error``: no log line per request, like ``--no-access-log``
    (at the default ``info`` Prism writes ~10 lines per request and answers about half as many).
    Prism serves the spec's paths as they are, without the base path of its ``servers`` URL."""
    port = free_port()
    pinned = [taskset, "-c", "1"] if pin else []
    command = [*pinned, prism, "mock", "--host", "127.0.0.1", "--port", str(port), "--verboseLevel", "error", str(spec)]
    return Server("prism mock", command, dict(os.environ), port, work / "prism.log", group=True)


def pinning() -> bool:
    pin = (os.cpu_count() or 1) >= 2
    if not pin:
        print("warning: fewer than 2 cores, so the server and wrk are not pinned", file=sys.stderr)
    return pin


def print_results(results: dict[str, Result]) -> None:
    print(
        f"{'case':24} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'cpu us/req':>10} {'requests':>9}"
        f" {'non-2xx':>8} {'sock err':>8}"
    )
    for name, r in results.items():
        print(
            f"{name:24} {r.rps:9.0f} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.cpu_us:10.0f} {r.requests:9d}"
            f" {r.bad_responses:8d} {r.socket_errors:8d}"
        )


def print_checks(checks: list[tuple[str, float, str, bool]]) -> int:
    """One line per check (``target`` empty: information only); 0 if every check passed, else 1."""
    print()
    for label, value, target, passed in checks:
        verdict = "" if not target else ("PASS" if passed else "FAIL")
        shown = f"{value:.2f}" if isinstance(value, float) else str(value)
        print(f"{verdict:4}  {label}: {shown} {('(target ' + target + ')') if target else ''}")
    return 0 if all(passed for *_, passed in checks) else 1

"""The HTTP client's own logic: long-poll, retries, lease loss, output batching. Against the protocol
server of ``fake_server.py`` on 127.0.0.1."""

from __future__ import annotations

import asyncio
import http.client
import time
from pathlib import Path

import pytest

from circlet.agent.protocol import (
    Backoff,
    OutputShipper,
    ProtocolError,
    RunnerClient,
    Task,
    TaskLost,
    Unauthorized,
)
from circlet.agent.protocol.blobs import FileBody, direct_endpoint, exchange_directly
from tests.agent.conftest import make_task, run_step
from tests.agent.fake_server import FakeRunnerServer, free_port

FAST = Backoff(first=0.05, most=0.2)


def client_for(server: FakeRunnerServer, token: str | None = None) -> RunnerClient:
    return RunnerClient(server.url, token or server.token, runner_name="test", backoff=FAST)


async def claimed(server: FakeRunnerServer, client: RunnerClient, **overrides: object) -> Task:
    server.enqueue(make_task([run_step("true")], **overrides))
    task = await client.claim("local", wait_seconds=1)
    assert task is not None
    return task


async def test_claim_answers_none_after_the_long_poll(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    started = time.monotonic()
    assert await client.claim("local", wait_seconds=1) is None
    assert 0.9 <= time.monotonic() - started < 3
    await client.aclose()


async def test_claim_gets_a_task_queued_during_the_poll(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    payload = make_task([run_step("make", name="Build")], secrets=["hunter22"])
    asyncio.get_running_loop().call_later(0.3, runner_server.enqueue, payload)
    task = await client.claim("local", wait_seconds=5)
    assert task is not None
    assert task.task_id == payload["task_id"]
    assert task.steps[0].name == "Build" and task.steps[0].args["command"] == "make"
    assert task.secrets == ["hunter22"]
    await client.aclose()


async def test_refused_runner_token(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server, token="wrong")
    with pytest.raises(Unauthorized):
        await client.claim("local", wait_seconds=0)
    await client.aclose()


async def test_claim_retries_until_the_server_is_up() -> None:
    port = free_port()
    client = RunnerClient(f"http://127.0.0.1:{port}", "runner-token", runner_name="test", backoff=FAST)
    server = FakeRunnerServer(port=port)
    server.enqueue(make_task([run_step("true")]))
    asyncio.get_running_loop().call_later(0.5, server.start)
    try:
        task = await asyncio.wait_for(client.claim("local", wait_seconds=1), 10)
        assert task is not None
    finally:
        server.stop()
        await client.aclose()


async def test_5xx_answers_are_retried(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client)
    runner_server.failures["heartbeat"] = [503, 500]
    assert await client.for_task(task).heartbeat() is False
    assert runner_server.recorded.heartbeats[task.task_id] == 1
    runner_server.cancel.add(task.task_id)
    assert await client.for_task(task).heartbeat() is True
    await client.aclose()


async def test_409_means_the_task_is_lost(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client)
    runner_server.expired.add(task.task_id)
    with pytest.raises(TaskLost, match="409"):
        await client.for_task(task).heartbeat()
    await client.aclose()


async def test_a_server_down_for_longer_than_the_lease_loses_the_task(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client, lease_seconds=1)
    runner_server.failures["complete"] = [503] * 1000
    started = time.monotonic()
    with pytest.raises(TaskLost, match="unreachable"):
        await client.for_task(task).complete("success", None)
    assert time.monotonic() - started < 3
    await client.aclose()


async def test_output_is_batched_in_order_one_call_at_a_time(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client)
    runner_server.output_delay = 0.05
    shipper = OutputShipper(client.for_task(task))
    expected = b""
    for number in range(300):
        line = f"line {number}\n".encode()
        expected += line
        await shipper.write(0, line)
        if number % 50 == 0:
            await asyncio.sleep(0.01)
    await shipper.write(1, b"next step\n")
    await shipper.aclose()
    recorded = runner_server.recorded
    assert runner_server.output(task.task_id, 0) == expected
    assert runner_server.output(task.task_id, 1) == b"next step\n"
    assert len(recorded.output_calls) < 10
    assert recorded.most_output_in_flight == 1
    await client.aclose()


async def test_output_waits_at_most_a_quarter_second(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client)
    shipper = OutputShipper(client.for_task(task))
    written = time.monotonic()
    await shipper.write(0, b"x")
    await asyncio.to_thread(runner_server.wait_for, lambda: runner_server.recorded.output_calls)
    assert 0.15 <= runner_server.recorded.output_calls[0][3] - written < 1.0
    big = b"y" * (200 * 1024)
    await shipper.write(0, big)
    await asyncio.sleep(0.15)
    assert sum(size for *_, size, _ in runner_server.recorded.output_calls) > 64 * 1024, "a full batch goes at once"
    await shipper.aclose()
    assert runner_server.output(task.task_id, 0) == b"x" + big
    await client.aclose()


async def test_output_memory_is_bounded(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client)
    runner_server.output_delay = 0.2
    shipper = OutputShipper(client.for_task(task), max_batch=1024, max_buffered=4096)
    started = time.monotonic()
    for _ in range(16):
        await shipper.write(0, b"z" * 1024)
    assert time.monotonic() - started > 0.3, "writers wait while the sender is behind"
    await shipper.aclose()
    assert runner_server.output(task.task_id, 0) == b"z" * 16 * 1024
    await client.aclose()


async def test_output_after_a_lost_lease_raises(runner_server: FakeRunnerServer) -> None:
    client = client_for(runner_server)
    task = await claimed(runner_server, client)
    runner_server.expired.add(task.task_id)
    shipper = OutputShipper(client.for_task(task))
    await shipper.write(0, b"lost")
    with pytest.raises(TaskLost):
        await shipper.flush()
    with pytest.raises(TaskLost):
        await shipper.write(0, b"more")
    with pytest.raises(TaskLost):
        await shipper.aclose()
    await client.aclose()


# -- blob bodies over a plain socket ---------------------------------------------------------------


async def bare_server(answers: dict[str, bytes], received: dict[str, bytes]) -> tuple[asyncio.Server, int]:
    """An HTTP/1.1 server of a few lines: answers ``answers[path]`` (a whole response) and records the
    body of each request (by ``Content-Length``)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        path = head.split(" ", 2)[1]
        length = next((int(line[15:]) for line in head.split("\r\n") if line.lower().startswith("content-length:")), 0)
        received[path] = await reader.readexactly(length)
        writer.write(answers[path])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_direct_transfers_read_both_framings_and_send_files_whole(tmp_path: Path) -> None:
    body = bytes(range(256)) * 9000
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:1000], body[1000:])) + b"0\r\n\r\n"
    answers = {
        "/p/length": b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body),
        "/p/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked,
        "/p/missing": b'HTTP/1.1 404 Not Found\r\nContent-Length: 17\r\n\r\n{"message": "no"}',
        "/p/short": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        "/p/upload?path=a%2Fb": b'HTTP/1.1 201 Created\r\nContent-Length: 11\r\n\r\n{"size": 3}',
    }
    received: dict[str, bytes] = {}
    server, port = await bare_server(answers, received)
    endpoint = direct_endpoint(f"http://127.0.0.1:{port}/p")
    assert endpoint == ("127.0.0.1", port, "/p")
    auth = {"Authorization": "Bearer t"}
    for name in ("length", "chunked"):
        target = tmp_path / name
        response = await exchange_directly(endpoint, "GET", f"/{name}", auth, target=target)
        assert response.status_code == 200 and target.read_bytes() == body
    missing = await exchange_directly(endpoint, "GET", "/missing", auth, target=tmp_path / "none")
    assert missing.status_code == 404 and missing.json() == {"message": "no"} and not (tmp_path / "none").exists()
    with pytest.raises(http.client.IncompleteRead):  # a body cut short is an error the caller retries
        await exchange_directly(endpoint, "GET", "/short", auth, target=tmp_path / "short")
    source = tmp_path / "source"
    source.write_bytes(body)
    uploaded = await exchange_directly(endpoint, "PUT", "/upload?path=a%2Fb", auth, source=source)
    assert uploaded.status_code == 201 and uploaded.json() == {"size": 3}
    assert received["/p/upload?path=a%2Fb"] == body
    server.close()
    await server.wait_closed()


async def test_a_cancelled_direct_transfer_stops_at_once(tmp_path: Path) -> None:
    """The exchange blocks in a thread: cancelling the caller must end it, not leave it for the
    socket's 30 s timeout."""

    closed = asyncio.Event()

    async def stall(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\nabc")
        await writer.drain()
        await reader.read()  # the end of the connection: the runner's side closed it
        closed.set()

    server = await asyncio.start_server(stall, "127.0.0.1", 0)
    endpoint = ("127.0.0.1", server.sockets[0].getsockname()[1], "")
    transfer = asyncio.create_task(exchange_directly(endpoint, "GET", "/blob", {}, target=tmp_path / "blob"))
    await asyncio.sleep(0.3)
    started = time.monotonic()
    transfer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await transfer
    await asyncio.wait_for(closed.wait(), 2)
    assert time.monotonic() - started < 2
    server.close()


def test_direct_transfers_step_aside_for_https_and_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    assert direct_endpoint("https://ci.example.com") is None
    assert direct_endpoint("http://ci.example.com:8080/") == ("ci.example.com", 8080, "")
    monkeypatch.setenv("HTTP_PROXY", "http://proxy:3128")
    assert direct_endpoint("http://ci.example.com:8080") is None


async def test_a_file_that_shrinks_while_sent_fails_the_call(tmp_path: Path) -> None:
    source = tmp_path / "f"
    source.write_bytes(b"x" * 3000)
    body = FileBody(source)
    source.write_bytes(b"x" * 10)
    with pytest.raises(ProtocolError, match="shrank"):
        _ = [chunk async for chunk in body]

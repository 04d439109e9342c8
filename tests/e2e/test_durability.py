"""Against a real server process: concurrent writers, and SIGKILL in the middle of acknowledged writes."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import httpx

from circlet.contexts.service import ContextService
from circlet.db.engine import create_database
from circlet.http.pagination import PageTokens
from circlet.secrets import load_keyring
from circlet.settings import Settings
from tests.conftest import LiveServer


def bootstrap(server: LiveServer) -> tuple[dict[str, str], str, str]:
    account = server.admin("bootstrap", "--org", "acme", "--user", "alice")
    return {"Circle-Token": account["token"]}, account["org"]["id"], server.url + "/api/v2"


async def test_fifty_concurrent_creates_of_one_name(live_server: LiveServer) -> None:
    headers, org_id, api = bootstrap(live_server)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as client:
        responses = await asyncio.gather(
            *[
                client.post(f"{api}/context", json={"name": "release", "owner": {"id": org_id}}, headers=headers)
                for _ in range(50)
            ]
        )
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [409] * 49, statuses
        listed = (await client.get(f"{api}/context", params={"owner-id": org_id}, headers=headers)).json()
        assert [c["name"] for c in listed["items"]] == ["release"]


async def test_concurrent_puts_leave_one_consistent_value(live_server: LiveServer) -> None:
    headers, org_id, api = bootstrap(live_server)
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=40)) as client:
        context = (
            await client.post(f"{api}/context", json={"name": "race", "owner": {"id": org_id}}, headers=headers)
        ).json()
        url = f"{api}/context/{context['id']}/environment-variable/SHARED"
        responses = await asyncio.gather(
            *[client.put(url, json={"value": f"value-{i}"}, headers=headers) for i in range(40)]
        )
        assert {r.status_code for r in responses} == {200}
        created = {r.json()["created_at"] for r in responses}
        assert len(created) == 1  # one row: every later PUT updated it
        listed = (await client.get(f"{api}/context/{context['id']}/environment-variable", headers=headers)).json()
        assert [item["variable"] for item in listed["items"]] == ["SHARED"]

    # The stored value is whole and is the one written by the PUT whose timestamp the row carries.
    settings = Settings(home=live_server.home, database_url=live_server.env["CIRCLET_DATABASE_URL"])
    database = create_database(settings.resolved_database_url)
    try:
        service = ContextService(load_keyring(settings.home), settings.limits, PageTokens(b"unused"))
        async with database.reading() as session:
            values = await service.env_var_values(session, uuid.UUID(context["id"]))
    finally:
        await database.dispose()
    winner = int(values["SHARED"].removeprefix("value-"))
    assert responses[winner].json()["updated_at"] == listed["items"][0]["updated_at"]


def test_sigkill_loses_no_acknowledged_write(live_server: LiveServer) -> None:
    headers, org_id, api = bootstrap(live_server)
    acknowledged: list[str] = []
    stop = threading.Event()

    def writer(worker: int) -> None:
        with httpx.Client(timeout=10) as client:
            n = 0
            while not stop.is_set():
                name = f"w{worker}-{n}"
                try:
                    response = client.post(
                        f"{api}/context", json={"name": name, "owner": {"id": org_id}}, headers=headers
                    )
                except httpx.TransportError:
                    return  # the server died mid-request: this write was never acknowledged
                if response.status_code == 200:
                    acknowledged.append(name)
                n += 1

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while len(acknowledged) < 150 and time.monotonic() < deadline:
        time.sleep(0.01)
    live_server.stop(kill=True)
    stop.set()
    for thread in threads:
        thread.join()
    assert len(acknowledged) >= 150

    live_server.start()
    stored: set[str] = set()
    token = None
    with httpx.Client(timeout=10) as client:
        while True:
            params = {"owner-id": org_id, **({"page-token": token} if token else {})}
            page = client.get(f"{api}/context", params=params, headers=headers).json()
            stored.update(item["name"] for item in page["items"])
            token = page["next_page_token"]
            if not token:
                break
    missing = set(acknowledged) - stored
    assert not missing, f"{len(missing)} acknowledged writes lost"

"""The steps the agent runs itself for a job in containers (checkout, caches, workspaces, artifacts,
test results) stay beneath the task directory: the job's code reaches nothing else of the host, and
a link it plants there, or an absolute path in its config, must not make the agent (root, or the
server's user) read or write anything else for it. Real podman, the test image, and a root-only
file standing for the server's key file."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from circlet.agent.containers import ContainerEngine
from tests.agent.conftest import Run, run_step
from tests.agent.test_containers import TEST_IMAGE, docker_task, execute_in, require_podman
from tests.agent.test_storage_steps import MemoryStorage

SECRET = b"THE SERVER'S KEYS\n"


def tar_of(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def engine() -> ContainerEngine:
    return require_podman()


@pytest.fixture
def secret() -> Iterator[Path]:
    """Outside /tmp (the container has a /tmp of its own), readable by the agent only."""
    directory = Path(tempfile.mkdtemp(prefix="circlet-secret-", dir="/run"))
    directory.chmod(0o700)
    key_file = directory / "secret-keys.json"
    key_file.write_bytes(SECRET)
    key_file.chmod(0o600)
    yield key_file
    key_file.unlink()
    directory.rmdir()


async def run(engine: ContainerEngine, steps: list[dict[str, object]], work_root: Path, storage: MemoryStorage) -> Run:
    return await execute_in(engine, docker_task(steps, [{"image": TEST_IMAGE}]), work_root, storage=storage)


async def test_artifacts_never_leave_the_task_directory(engine: ContainerEngine, work_root: Path, secret: Path) -> None:
    storage = MemoryStorage()
    steps = [
        run_step(f"echo mine > mine.txt && ln -s {secret} planted && mkdir d && ln -s {secret.parent} d/up"),
        {"type": "store_artifacts", "path": "mine.txt"},
        {"type": "store_artifacts", "path": "planted", "when": "always"},
        {"type": "store_artifacts", "path": str(secret), "when": "always"},
        {"type": "store_test_results", "path": "d", "when": "always"},
    ]
    result = await run(engine, steps, work_root, storage)
    assert storage.artifacts == {"mine.txt": b"mine\n"}, "only the job's own file"
    assert result.sink.final()[2][0] == "failed" and "outside the task directory" in result.sink.output(2)
    assert result.sink.final()[3][0] == "failed" and "outside the task directory" in result.sink.output(3)
    assert storage.tests == []
    assert all(SECRET not in output for output in result.sink.outputs.values())


async def test_a_cache_holds_only_what_is_beneath_the_task_directory(
    engine: ContainerEngine, work_root: Path, secret: Path
) -> None:
    storage = MemoryStorage()
    steps = [
        run_step(f"mkdir -p deps && echo mine > deps/own && ln -s {secret} deps/planted && ln -s {secret.parent} dir"),
        {"type": "save_cache", "key": "deps-v1", "paths": ["deps", "dir", str(secret)]},
    ]
    result = await run(engine, steps, work_root, storage)
    assert result.result.status == "success", result.sink.final()
    saved = storage.caches["deps-v1"]
    assert SECRET not in saved
    assert b"mine\n" in saved


async def test_a_restore_never_writes_through_a_planted_link(
    engine: ContainerEngine, work_root: Path, secret: Path
) -> None:
    storage = MemoryStorage()
    storage.caches["deps-v1"] = tar_of({"project/out/secret-keys.json": b"OVERWRITTEN\n"})
    storage.layers = [("layer-1", tar_of({"secret-keys.json": b"OVERWRITTEN\n"}))]
    steps = [
        run_step(f"ln -s {secret.parent} out && ln -s {secret.parent} ws"),
        {"type": "restore_cache", "keys": ["deps-v1"]},
        {"type": "attach_workspace", "at": "ws", "when": "always"},
    ]
    result = await run(engine, steps, work_root, storage)
    assert secret.read_bytes() == SECRET, "the server's file is as it was"
    assert result.sink.final()[2][0] == "failed", result.sink.output(2)

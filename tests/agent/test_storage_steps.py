"""The storage steps on the runner's side, against an in-memory storage: cache key templates, archives
that refuse to write outside their target, and the steps' behaviour as CircleCI documents it."""

from __future__ import annotations

import base64
import hashlib
import io
import shutil
import tarfile
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest

from circlet.agent.protocol import Gone, ProtocolError
from circlet.agent.steps.archives import ArchiveError, create, extract
from circlet.agent.steps.cache_keys import TemplateError, arch, render_key
from tests.agent.conftest import execute, make_task, run_step


class MemoryStorage:
    """The server's storage, in memory (files are copied in and out, as the real client streams them)."""

    def __init__(self) -> None:
        self.caches: dict[str, bytes] = {}
        self.layers: list[tuple[str, bytes]] = []
        self.artifacts: dict[str, bytes] = {}
        self.tests: list[tuple[str, str]] = []

    async def find_cache(self, keys: Sequence[str]) -> str | None:
        for key in keys:
            matches = [saved for saved in self.caches if saved.startswith(key)]
            if matches:
                return matches[-1]
        return None

    async def cache_exists(self, key: str) -> bool:
        return key in self.caches

    async def download_cache(self, key: str, target: Path) -> None:
        target.write_bytes(self.caches[key])

    async def upload_cache(self, key: str, source: Path) -> bool:
        if key in self.caches:
            return False
        self.caches[key] = source.read_bytes()
        return True

    async def upload_layer(self, source: Path) -> None:
        self.layers.append((uuid.uuid4().hex, source.read_bytes()))

    async def workspace_layers(self) -> list[str]:
        return [layer for layer, _ in self.layers]

    async def download_layer(self, layer_id: str, target: Path) -> None:
        target.write_bytes(dict(self.layers)[layer_id])

    async def upload_artifact(self, destination: str, source: Path) -> None:
        self.artifacts[destination] = source.read_bytes()

    async def upload_test_results(self, source: str, file: Path) -> int:
        text = file.read_text()
        if not text.startswith("<"):
            raise ProtocolError("Test results are not JUnit XML circlet accepts: not well-formed XML")
        self.tests.append((source, file.name))
        return text.count("<testcase")


def test_key_templates(tmp_path: Path) -> None:
    (tmp_path / "lock").write_bytes(b"deps")
    environment = {"CIRCLE_BRANCH": "main", "CIRCLE_SHA1": "abc", "CIRCLE_BUILD_NUM": "7", "LANG_V": "3.11"}
    rendered = render_key(
        "v1-{{ .Branch }}-{{.Revision}}-{{ .BuildNum }}-{{ .Environment.LANG_V }}-{{ .Environment.UNSET }}-"
        '{{ checksum "lock" }}-{{ arch }}',
        environment,
        lambda name: tmp_path / name,
    )
    checksum = base64.b64encode(hashlib.sha256(b"deps").digest()).decode()
    assert rendered == f"v1-main-abc-7-3.11--{checksum}-{arch()}"
    assert arch().startswith("arch1-linux-")
    assert render_key("{{ epoch }}", {}, Path).isdigit()
    with pytest.raises(TemplateError, match="unknown cache key template"):
        render_key("{{ .Nope }}", {}, Path)
    with pytest.raises(TemplateError, match="cannot read"):
        render_key('{{ checksum "missing" }}', {}, lambda name: tmp_path / name)


def tar_of(*members: tuple[str, bytes, str]) -> bytes:
    """A tar of ``(name, type, link)`` members (regular files hold ``x``), as a hostile one may be made."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, kind, link in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = link
            info.size = 1 if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(b"x") if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


def tar_with(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = link
        info.size = len(data) if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "archive",
    [
        tar_with("../escape"),
        tar_with("/tmp/absolute-escape"),
        tar_with("link", kind=tarfile.LNKTYPE, link="../../outside"),
        tar_with("device", kind=tarfile.CHRTYPE),
        tar_with("pipe", kind=tarfile.FIFOTYPE),
        b"\x1f\x8b garbage",
    ],
    ids=["dot-dot", "absolute", "hardlink-out", "device", "fifo", "garbage"],  # the bytes hold a gzip time
)
async def test_tampered_archives_write_nothing_outside(tmp_path: Path, archive: bytes) -> None:
    target = tmp_path / "target"
    path = tmp_path / "a.tar.gz"
    path.write_bytes(archive)
    with pytest.raises(ArchiveError):
        await extract(path, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar.gz", "target"]


def outside_dir(tmp_path: Path) -> Path:
    """A directory outside every target, standing for ``/etc``: its contents must never change."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_text("root\n")
    return outside


def unchanged(outside: Path) -> bool:
    return sorted(p.name for p in outside.iterdir()) == ["passwd"] and (outside / "passwd").read_text() == "root\n"


async def extract_bytes(tmp_path: Path, data: bytes, target: Path) -> int:
    archive = tmp_path / f"{uuid.uuid4().hex}.tar"
    archive.write_bytes(data)
    return await extract(archive, target)


@pytest.mark.parametrize("how", ["same-archive", "later-archive"])
@pytest.mark.parametrize(
    "kind",
    [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE],
    ids=["file", "dir", "symlink", "hardlink"],
)
async def test_a_planted_link_never_redirects_a_later_member(tmp_path: Path, how: str, kind: bytes) -> None:
    outside = outside_dir(tmp_path)
    target = tmp_path / "target"
    plant = ("dir", tarfile.SYMTYPE, str(outside))
    follow = ("dir/passwd", kind, "x" if kind == tarfile.SYMTYPE else ("f" if kind == tarfile.LNKTYPE else ""))
    first = [("f", tarfile.REGTYPE, ""), plant]
    # "later-archive": another cache or workspace layer unpacked into the same place afterwards
    archives = [tar_of(*first, follow)] if how == "same-archive" else [tar_of(*first), tar_of(follow)]
    with pytest.raises(ArchiveError, match="through a link leading outside the target"):
        for data in archives:
            await extract_bytes(tmp_path, data, target)
    assert unchanged(outside)
    assert (target / "dir").readlink() == outside  # the link itself is kept: it wrote nothing


async def test_a_member_replaces_a_link_in_its_place_instead_of_writing_through_it(tmp_path: Path) -> None:
    outside = outside_dir(tmp_path)
    target = tmp_path / "target"
    await extract_bytes(tmp_path, tar_of(("passwd", tarfile.SYMTYPE, str(outside / "passwd"))), target)
    await extract_bytes(tmp_path, tar_of(("passwd", tarfile.REGTYPE, "")), target)
    assert unchanged(outside)
    assert not (target / "passwd").is_symlink() and (target / "passwd").read_text() == "x"

    await extract_bytes(tmp_path, tar_of(("d", tarfile.SYMTYPE, str(outside))), target)
    await extract_bytes(tmp_path, tar_of(("d", tarfile.DIRTYPE, ""), ("d/passwd", tarfile.REGTYPE, "")), target)
    assert unchanged(outside)
    assert (target / "d").is_dir() and not (target / "d").is_symlink()


async def test_a_cached_absolute_path_is_unpacked_as_a_target_of_its_own(tmp_path: Path) -> None:
    """A saved absolute path's members stay under it: a link it plants leads nowhere for the next."""
    outside = outside_dir(tmp_path)
    deps = tmp_path / "opt" / "deps"
    hostile = tar_of(
        (str(deps), tarfile.DIRTYPE, ""),
        (f"{deps}/ok", tarfile.REGTYPE, ""),
        (f"{deps}/link", tarfile.SYMTYPE, str(outside)),
        (f"{deps}/link/passwd", tarfile.REGTYPE, ""),
    )
    archive = tmp_path / "cache.tar"
    archive.write_bytes(hostile)
    with pytest.raises(ArchiveError, match="through a link leading outside the target"):
        await extract(archive, tmp_path / "home", movable=tmp_path / "task")
    assert unchanged(outside)
    assert (deps / "ok").read_text() == "x" and (deps / "link").readlink() == outside


async def test_a_hard_link_to_a_link_leading_outside_is_refused(tmp_path: Path) -> None:
    outside = outside_dir(tmp_path)
    target = tmp_path / "target"
    hostile = tar_of(("abs", tarfile.SYMTYPE, str(outside / "passwd")), ("hard", tarfile.LNKTYPE, "abs"))
    with pytest.raises(ArchiveError):
        await extract_bytes(tmp_path, hostile, target)
    assert not (target / "hard").exists()
    assert unchanged(outside)


async def test_relative_and_absolute_links_are_kept_as_they_were(tmp_path: Path) -> None:
    source = tmp_path / "home"
    (source / "tree" / "sub").mkdir(parents=True)
    (source / "tree" / "sub" / "file").write_text("data")
    (source / "tree" / "relative").symlink_to("sub/file")
    (source / "tree" / "up").symlink_to("../elsewhere")  # leads outside the tree, and dangles
    (source / "tree" / "absolute").symlink_to("/usr/bin/env")
    (source / "tree" / "dirlink").symlink_to("sub")
    archive = tmp_path / "a.tar"
    await create(archive, source, [source / "tree"])
    restored = tmp_path / "restored"
    for _ in range(2):  # unpacking again over the same links replaces them
        assert await extract(archive, restored) == 7
    links = {name: (restored / "tree" / name).readlink() for name in ("relative", "up", "absolute", "dirlink")}
    assert links == {
        "relative": Path("sub/file"),
        "up": Path("../elsewhere"),
        "absolute": Path("/usr/bin/env"),
        "dirlink": Path("sub"),
    }
    assert (restored / "tree" / "dirlink" / "file").read_text() == "data"


async def test_archives_are_plain_tars_as_tarfile_makes_them_and_old_gzip_ones_restore(tmp_path: Path) -> None:
    source = tmp_path / "home"
    (source / "deps" / "sub").mkdir(parents=True)
    (source / "deps" / "sub" / "big.bin").write_bytes(bytes(range(256)) * 5000)  # not a multiple of 512
    (source / "deps" / "empty").write_bytes(b"")
    (source / "deps" / "link").symlink_to("sub/big.bin")
    archive = tmp_path / "made.tar"
    assert (await create(archive, source, [source / "deps"])).count == 1
    reference = tmp_path / "reference.tar"
    with tarfile.open(reference, "w") as tar:  # what tarfile writes with its own copy loop
        tar.add(source / "deps", arcname="deps")
    assert archive.read_bytes() == reference.read_bytes()

    restored = tmp_path / "restored"
    assert await extract(archive, restored) == 5
    assert (restored / "deps" / "sub" / "big.bin").read_bytes() == bytes(range(256)) * 5000
    assert (restored / "deps" / "empty").read_bytes() == b""
    assert (restored / "deps" / "link").readlink() == Path("sub/big.bin")

    old = tmp_path / "old.tar.gz"  # caches and layers stored before archives were plain tars
    with tarfile.open(old, "w:gz", compresslevel=1) as tar:
        tar.add(source / "deps" / "sub", arcname="deps/sub")
    assert await extract(old, tmp_path / "from-old") == 2
    assert (tmp_path / "from-old" / "deps" / "sub" / "big.bin").read_bytes() == bytes(range(256)) * 5000


async def test_cache_saved_once_and_restored_by_prefix(work_root: Path) -> None:
    storage = MemoryStorage()
    save = [
        run_step("mkdir -p deps/sub ~/.tool && echo v1 > deps/sub/f && echo t > ~/.tool/t"),
        {"type": "save_cache", "key": "deps-{{ .Branch }}", "paths": ["deps", "~/.tool", "missing"]},
    ]
    environment = {"CIRCLE_BRANCH": "main"}
    first = await execute(make_task(save, environment=environment), work_root, storage=storage)
    assert first.result.status == "success", first.sink.outputs
    assert list(storage.caches) == ["deps-main"]
    output = first.sink.output(1)
    assert "Warning: could not find missing; not cached" in output
    assert output.endswith("Stored Cache to deps-main\n")

    again = await execute(make_task(save, environment=environment), work_root, storage=storage)
    assert again.sink.output(1) == "Skipping cache generation, cache already exists for key: deps-main\n"

    restore = [
        {"type": "restore_cache", "keys": ["nothing-", "deps-"]},
        run_step("cat deps/sub/f ~/.tool/t"),
        {"type": "restore_cache", "key": "absent"},
    ]
    restored = await execute(make_task(restore), work_root, storage=storage)
    assert restored.result.status == "success"
    assert restored.sink.output(1) == "v1\nt\n"
    assert restored.sink.output(2) == "No cache is found for key: absent\n"


async def test_a_cache_that_expires_between_find_and_download_is_a_miss(work_root: Path) -> None:
    class ExpiringStorage(MemoryStorage):
        async def download_cache(self, key: str, target: Path) -> None:
            raise Gone("The stored bytes are gone.")  # what the server answers once the sweep took them

    storage = ExpiringStorage()
    storage.caches["deps-main"] = b"never read"
    restore = [{"type": "restore_cache", "keys": ["deps-"]}, run_step("echo next")]
    restored = await execute(make_task(restore), work_root, storage=storage)
    assert restored.result.status == "success"
    assert restored.sink.output(0) == (
        "Found a cache at deps-main\nThe cache deps-main expired before it could be restored; no cache is restored\n"
    )
    assert restored.sink.output(1) == "next\n"


async def test_workspace_artifacts_and_test_results(work_root: Path) -> None:
    storage = MemoryStorage()
    persist = [
        run_step("mkdir -p build/bin && echo one > build/bin/a && echo two > build/b.txt"),
        {"type": "persist_to_workspace", "root": "build", "paths": ["bin", "*.txt"]},
    ]
    assert (await execute(make_task(persist), work_root, storage=storage)).result.status == "success"
    refused = [{"type": "persist_to_workspace", "root": ".", "paths": ["../x"]}]
    bad = await execute(make_task(refused), work_root, storage=storage)
    assert bad.result.status == "failed" and "without '..'" in bad.sink.output(0)

    steps = [
        {"type": "attach_workspace", "at": "ws"},
        run_step("cat ws/bin/a ws/b.txt"),
        run_step("mkdir -p r/unit && echo '<testsuite><testcase name=\"t\"/></testsuite>' > r/unit/a.xml"),
        run_step("echo nope > r/bad.xml && echo skip > r/notes.txt && exit 1"),
        {"type": "store_test_results", "path": "r"},
        {"type": "store_artifacts", "path": "r", "destination": "/out/"},
        {"type": "store_artifacts", "path": "ws/b.txt"},
    ]
    run = await execute(make_task(steps), work_root, storage=storage)
    assert run.sink.output(1) == "one\ntwo\n"
    assert run.sink.final()[4] == ("success", 0)  # store_* run after a failure, and bad XML does not fail
    assert "Error uploading bad.xml: Test results are not JUnit XML" in run.sink.output(4)
    assert storage.tests == [("unit", "a.xml")]
    assert sorted(storage.artifacts) == ["out/bad.xml", "out/notes.txt", "out/unit/a.xml", "ws/b.txt"]
    assert storage.artifacts["ws/b.txt"] == b"two\n"


async def test_storage_steps_need_a_storage(work_root: Path) -> None:
    run = await execute(make_task([{"type": "save_cache", "key": "k", "paths": ["."]}]), work_root)
    assert run.result.status == "failed"
    assert run.sink.output(0) == "circlet runner: save_cache needs the server's storage, which this runner lacks\n"


async def test_a_cached_python_venv_restores_and_runs(work_root: Path) -> None:
    """``python -m venv`` links ``bin/python3`` to the absolute interpreter: CircleCI restores such caches."""
    storage = MemoryStorage()
    save = [
        # Which of bin/python* holds the absolute link depends on the interpreter's name: list them all.
        run_step("python3 -m venv --without-pip .venv && readlink .venv/bin/python*"),
        {"type": "save_cache", "key": "venv-v1", "paths": [".venv"]},
    ]
    saved = await execute(make_task(save), work_root, storage=storage)
    assert saved.result.status == "success", saved.sink.outputs
    links = saved.sink.output(0)
    assert any(link.startswith("/") for link in links.split()), links

    restore = [
        {"type": "restore_cache", "keys": ["venv-"]},
        run_step(
            'readlink .venv/bin/python* && .venv/bin/python -c "import sys; print(sys.prefix == sys.base_prefix)"'
        ),
    ]
    restored = await execute(make_task(restore), work_root, storage=storage)
    assert restored.result.status == "success", restored.sink.outputs
    assert restored.sink.output(1) == f"{links}False\n"


async def test_paths_outside_the_home_are_saved_and_restored_where_they_were(work_root: Path, tmp_path: Path) -> None:
    """An absolute path is cached as CircleCI caches it; ``~/..`` follows the task directory, as
    ``/home/circleci/..`` is the same path in every CircleCI job."""
    storage = MemoryStorage()
    deps = tmp_path / "opt" / "deps"
    save = [
        run_step(f"mkdir -p {deps}/lib ~/../other && echo dep > {deps}/lib/d && ln -s /usr/bin/env {deps}/env"),
        run_step("echo other > ~/../other/o"),
        {"type": "save_cache", "key": "outside-v1", "paths": [str(deps), "~/../other"]},
    ]
    saved = await execute(make_task(save), work_root, storage=storage)
    assert saved.result.status == "success", saved.sink.outputs
    assert saved.sink.output(2).endswith(" bytes, 2 paths)...\nStored Cache to outside-v1\n")
    shutil.rmtree(tmp_path / "opt")

    restore = [
        {"type": "restore_cache", "key": "outside-v1"},
        run_step(f"cat {deps}/lib/d ~/../other/o && readlink {deps}/env"),
    ]
    restored = await execute(make_task(restore), work_root, storage=storage)
    assert restored.result.status == "success", restored.sink.outputs
    assert restored.sink.output(1) == "dep\nother\n/usr/bin/env\n"
    assert sorted(p.name for p in work_root.iterdir() if p.name.startswith("task-")) == []  # nothing left behind


async def test_a_save_that_finds_nothing_stores_nothing(work_root: Path) -> None:
    storage = MemoryStorage()
    empty = [{"type": "save_cache", "key": "deps-v1", "paths": ["missing", "~/absent"]}]
    run = await execute(make_task(empty), work_root, storage=storage)
    assert run.result.status == "success"
    assert run.sink.output(0) == (
        "Warning: could not find missing; not cached\n"
        "Warning: could not find ~/absent; not cached\n"
        "No cache is saved for key: deps-v1: none of its paths exist\n"
    )
    assert storage.caches == {}

    later = [run_step("mkdir missing && echo v > missing/f"), *empty]
    assert (await execute(make_task(later), work_root, storage=storage)).result.status == "success"
    assert list(storage.caches) == ["deps-v1"]

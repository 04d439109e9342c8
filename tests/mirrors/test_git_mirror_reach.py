"""What a mirror fetch may reach, decided at fetch time (circlet.mirrors.git_mirror with circlet.reach):
real git, a real `git daemon`, real repositories on disk."""

from __future__ import annotations

import ipaddress
import subprocess
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from circlet.mirrors.git_mirror import GitError, GitMirrors, RepoSource
from circlet.reach.network import IPAddress, NetworkGuard, parse_networks
from circlet.reach.repo_urls import RepoRules
from tests.conftest import free_port
from tests.e2e.helpers import wait_for_port
from tests.pipelines.helpers import git, make_repo

FORGE = "127.0.0.2"


@dataclass(frozen=True)
class ResolvesTo(NetworkGuard):
    """The guard with a resolver of fixed answers, for names no real DNS knows: a fetch that works
    proves git connected to the address the guard checked, not to the name."""

    answers: dict[str, str] = field(default_factory=dict)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        return self.check(host, [ipaddress.ip_address(self.answers[host])])


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[int, str]]:
    served = tmp_path / "served"
    commit = make_repo(served / "app", {"README": "hello\n"})
    port = free_port()
    process = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--export-all", f"--listen={FORGE}", f"--port={port}",
         f"--base-path={served}", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(FORGE, port)
        yield port, commit
    finally:
        process.terminate()
        process.wait(timeout=30)


async def test_git_connects_to_the_checked_address_not_the_name(tmp_path: Path, daemon: tuple[int, str]) -> None:
    port, commit = daemon
    guard = ResolvesTo(parse_networks(f"{FORGE}/32"), answers={"forge.invalid": FORGE})
    mirrors = GitMirrors(tmp_path / "home" / "mirrors", RepoRules(tmp_path / "home"), guard)
    source = RepoSource(uuid.uuid4(), f"git://forge.invalid:{port}/app", False)
    path = await mirrors.fetch(source)
    assert path.parent == tmp_path / "home" / "mirrors" / str(source.project_id)
    assert (await mirrors.resolve(path, branch="main", tag=None)).sha == commit


class Redirecting(SimpleHTTPRequestHandler):
    """Serves the repository, except under /moved/, which redirects to the metadata address."""

    def do_GET(self) -> None:
        if self.path.startswith("/moved/"):
            self.send_response(302)
            self.send_header("Location", "http://169.254.169.254" + self.path[len("/moved") :])
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_forge(tmp_path: Path) -> Iterator[tuple[int, str]]:
    """A repository over git's dumb HTTP protocol, from a plain file server on the private address."""
    work = tmp_path / "work"
    commit = make_repo(work, {"README": "hello\n"})
    bare = tmp_path / "www" / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    git(bare, "update-server-info")
    server = ThreadingHTTPServer((FORGE, 0), partial(Redirecting, directory=str(tmp_path / "www")))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], commit
    finally:
        server.shutdown()
        server.server_close()


async def test_http_fetches_connect_to_the_checked_address_and_follow_no_redirect(
    tmp_path: Path, http_forge: tuple[int, str]
) -> None:
    port, commit = http_forge
    guard = ResolvesTo(parse_networks(f"{FORGE}/32"), answers={"forge.invalid": FORGE})
    mirrors = GitMirrors(tmp_path / "mirrors", RepoRules(tmp_path / "home"), guard)
    path = await mirrors.fetch(RepoSource(uuid.uuid4(), f"http://forge.invalid:{port}/app.git", False))
    assert (await mirrors.resolve(path, branch="main", tag=None)).sha == commit
    with pytest.raises(GitError, match="returned error: 302"):
        await mirrors.fetch(RepoSource(uuid.uuid4(), f"http://forge.invalid:{port}/moved/app.git", False))


async def test_a_name_that_now_resolves_to_metadata_is_refused(tmp_path: Path, daemon: tuple[int, str]) -> None:
    port, _ = daemon
    guard = ResolvesTo(parse_networks(f"{FORGE}/32"), answers={"forge.invalid": "169.254.169.254"})
    mirrors = GitMirrors(tmp_path / "mirrors", RepoRules(tmp_path / "home"), guard)
    with pytest.raises(GitError, match="forge.invalid resolves to a link-local address"):
        await mirrors.fetch(RepoSource(uuid.uuid4(), f"git://forge.invalid:{port}/app", False))


async def test_local_paths_are_judged_again_at_fetch_time(tmp_path: Path) -> None:
    home = tmp_path / "home"
    make_repo(tmp_path / "git" / "app", {"README": "hello\n"})
    link = tmp_path / "git" / "link"
    link.symlink_to(tmp_path / "git" / "app")
    rules = RepoRules(home, (tmp_path / "git",))
    mirrors = GitMirrors(home / "mirrors", rules, NetworkGuard())
    api_project = RepoSource(uuid.uuid4(), str(link), False)
    await mirrors.fetch(api_project)
    # The link now leads into the data directory: neither an API nor an operator project may follow it.
    (home / "mirrors").mkdir(parents=True, exist_ok=True)
    link.unlink()
    link.symlink_to(home / "mirrors")
    for set_by_operator in (False, True):
        with pytest.raises(GitError, match="CIRCLET_HOME"):
            await mirrors.fetch(RepoSource(api_project.project_id, str(link), set_by_operator))
    # Without the root, the API project's path is no longer allowed; the operator's still is.
    narrowed = GitMirrors(home / "mirrors", RepoRules(home), NetworkGuard())
    with pytest.raises(GitError, match="only the operator may"):
        await narrowed.fetch(RepoSource(uuid.uuid4(), str(tmp_path / "git" / "app"), False))
    await narrowed.fetch(RepoSource(uuid.uuid4(), str(tmp_path / "git" / "app"), True))


async def test_removing_a_project_removes_its_mirrors_only(tmp_path: Path) -> None:
    make_repo(tmp_path / "app", {"README": "hello\n"})
    mirrors = GitMirrors(tmp_path / "mirrors", RepoRules(tmp_path / "home"), NetworkGuard())
    kept, removed = (RepoSource(uuid.uuid4(), str(tmp_path / "app"), True) for _ in range(2))
    await mirrors.fetch(kept)
    await mirrors.fetch(removed)
    mirrors.remove([removed.project_id])
    assert not (tmp_path / "mirrors" / str(removed.project_id)).exists()
    assert (mirrors.path_for(kept) / "HEAD").exists()

"""$CIRCLET_HOME is the server's own (issue 21): created owner-only, tightened when wider, refused
when another user owns it; and the embedded runner never inherits the server's settings."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from circlet.cli import EmbeddedRunner, runner_environment
from circlet.settings import HomeError, Settings
from tests.conftest import server_env


@pytest.fixture(autouse=True)
def keep_umask() -> Iterator[None]:
    """``ensure_home`` sets the process's umask for good; the other tests of this process keep theirs."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield
    os.umask(previous)


def modes(home: Path) -> dict[str, str]:
    found = {".": stat.filemode(home.stat().st_mode)}
    for path in home.rglob("*"):
        if not path.is_symlink():
            found[path.relative_to(home).as_posix()] = stat.filemode(path.stat().st_mode)
    return found


def test_a_new_home_and_what_is_created_in_it_are_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    Settings(home=home).ensure_home()
    (home / "blobs").mkdir()
    (home / "blobs" / "one").write_bytes(b"stored")
    assert modes(home) == {".": "drwx------", "blobs": "drwx------", "blobs/one": "-rw-------"}


def test_a_wider_home_is_tightened_without_following_links(tmp_path: Path) -> None:
    home = tmp_path / "old-home"
    (home / "orbs" / "acme").mkdir(parents=True)
    (home / "orbs" / "acme" / "orb.yml").write_text("version: 2.1\n")
    (home / "secret-keys.json").write_text("{}")
    (home / "run.sh").write_text("#!/bin/sh\n")
    for path, mode in [(home, 0o755), (home / "orbs", 0o775), (home / "orbs" / "acme", 0o777)]:
        path.chmod(mode)
    (home / "orbs" / "acme" / "orb.yml").chmod(0o666)
    (home / "secret-keys.json").chmod(0o644)
    (home / "run.sh").chmod(0o755)
    outside = tmp_path / "outside.txt"
    outside.write_text("not the home's")
    outside.chmod(0o644)
    (home / "link").symlink_to(outside)

    Settings(home=home).ensure_home()

    assert modes(home) == {
        ".": "drwx------",
        "orbs": "drwx------",
        "orbs/acme": "drwx------",
        "orbs/acme/orb.yml": "-rw-------",
        "secret-keys.json": "-rw-------",
        "run.sh": "-rwx------",
    }
    assert stat.filemode(outside.stat().st_mode) == "-rw-r--r--"


@pytest.mark.skipif(os.geteuid() != 0, reason="giving the home to another user needs root")
def test_a_home_of_another_user_is_refused_with_a_reason(tmp_path: Path) -> None:
    home = tmp_path / "theirs"
    home.mkdir(mode=0o755)
    os.chown(home, 65534, 65534)
    with pytest.raises(HomeError, match="belongs to user id 65534"):
        Settings(home=home).ensure_home()
    env = server_env(home, "")
    env.pop("CIRCLET_DATABASE_URL")
    served = subprocess.run(
        [sys.executable, "-m", "circlet.cli", "serve", "--port", "9"], env=env, capture_output=True, text=True
    )
    assert served.returncode == 1
    assert "belongs to user id 65534" in json.loads(served.stderr.strip().splitlines()[-1])["error"]
    assert stat.S_IMODE(home.stat().st_mode) == 0o755, "refused, not changed"


def test_the_embedded_runner_gets_none_of_the_servers_settings() -> None:
    server = {
        "PATH": "/usr/bin",
        "CIRCLET_DATABASE_URL": "postgresql://postgres@db/circlet",
        "CIRCLET_SECRET_KEY": "k",
        "CIRCLET_HOME": "/srv/circlet",
        "CIRCLET_RUNNER_CONTAINER_ENGINE": "podman",
        "CIRCLET_JOB_USER": "ci1",
    }
    assert runner_environment(server, "tok") == {
        "PATH": "/usr/bin",
        "CIRCLET_RUNNER_CONTAINER_ENGINE": "podman",
        "CIRCLET_JOB_USER": "ci1",
        "CIRCLET_RUNNER_TOKEN": "tok",
    }


def test_the_embedded_runner_refuses_host_jobs_unless_they_are_trusted(tmp_path: Path) -> None:
    """Without root it could only run them as the server's user (as root it runs them as job users
    whatever this says: ``--host-jobs`` applies only to an agent that cannot switch users)."""
    settings = Settings(home=tmp_path)
    default = EmbeddedRunner(settings, "http://127.0.0.1:1", 2).command()
    trusted = EmbeddedRunner(settings, "http://127.0.0.1:1", 2, trust_jobs=True).command()
    assert default[default.index("--host-jobs") + 1] == "refuse"
    assert trusted[trusted.index("--host-jobs") + 1] == "allow"

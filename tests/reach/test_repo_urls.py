"""Repository locations as git reads them, and who may name which (circlet.reach.repo_urls)."""

from __future__ import annotations

from pathlib import Path

import pytest

from circlet.reach.network import Refused
from circlet.reach.repo_urls import RepoRules, parse_location, parse_roots


@pytest.mark.parametrize(
    ("url", "kind", "host", "port"),
    [
        ("https://github.com/acme/app.git", "https", "github.com", 443),
        ("https://git.example.com:8443/acme/app", "https", "git.example.com", 8443),
        ("ssh://git@git.example.com:2222/acme/app.git", "ssh", "git.example.com", 2222),
        ("git@github.com:acme/app.git", "ssh", "github.com", 22),
        ("github.com:acme/app.git", "ssh", "github.com", 22),
        ("git://[::1]:9418/app", "git", "::1", 9418),
        ("http://git.example.com/app", "http", "git.example.com", 80),
    ],
)
def test_network_locations_are_read_as_git_reads_them(url: str, kind: str, host: str, port: int) -> None:
    location = parse_location(url)
    assert (location.kind, location.host, location.port) == (kind, host, port)


@pytest.mark.parametrize(
    "url",
    [
        "ext::sh -c touch% /tmp/pwned",
        "fd::3",
        "fd::3,4/x",
        "EXT::sh",
        "-uhelp",
        "ssh://-oProxyCommand=x/y",
        "-oProxyCommand=x:y",
        "ftp://example.com/x",
        "https://host:99999/x",
        "https://[::1/x",
        "ssh://[fe80::1/x",
    ],
)
def test_forms_no_one_may_use_are_refused(url: str) -> None:
    with pytest.raises(Refused):
        parse_location(url)
    with pytest.raises(Refused):
        RepoRules(Path("/var/circlet")).check_for_operator(url)


def test_the_api_names_only_network_repositories(tmp_path: Path) -> None:
    rules = RepoRules(tmp_path / "home")
    for url in ("https://github.com/a/b", "git@github.com:a/b.git", "ssh://github.com/a/b", "git://example.com/b"):
        assert rules.check_for_api(url).url == url
    for url in (str(tmp_path / "repo"), f"file://{tmp_path}/repo", "relative/repo", "http://example.com/a"):
        with pytest.raises(Refused):
            rules.check_for_api(url)


def test_local_roots_admit_paths_under_them_after_symbolic_links(tmp_path: Path) -> None:
    root, elsewhere = tmp_path / "git", tmp_path / "private"
    (root / "team").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "escape").symlink_to(elsewhere)
    rules = RepoRules(tmp_path / "home", (root,))
    assert rules.check_for_api(str(root / "team" / "app.git")).is_local
    assert rules.check_for_api(f"file://{root}/team/app.git").is_local
    for url in (str(root / "escape" / "app.git"), str(root / "team" / ".." / ".." / "private"), str(elsewhere)):
        with pytest.raises(Refused, match="CIRCLET_LOCAL_REPO_ROOTS"):
            rules.check_for_api(url)


def test_nobody_names_the_data_directory_even_through_a_link(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "mirrors").mkdir(parents=True)
    (tmp_path / "innocent").symlink_to(home / "mirrors")
    rules = RepoRules(home, (tmp_path,))
    for url in (str(home / "mirrors" / "x.git"), str(tmp_path / "innocent" / "x.git"), f"file://{home}"):
        with pytest.raises(Refused, match="CIRCLET_HOME"):
            rules.check_for_operator(url)
        with pytest.raises(Refused, match="CIRCLET_HOME"):
            rules.check_for_api(url)
    assert rules.check_for_operator(str(tmp_path / "elsewhere.git")).is_local


def test_git_may_use_only_the_locations_own_transport(tmp_path: Path) -> None:
    rules = RepoRules(tmp_path)
    assert rules.transports(parse_location("https://github.com/a/b")) == "https"
    assert rules.transports(parse_location("git@github.com:a/b")) == "ssh"
    assert rules.transports(parse_location("/srv/git/a")) == "file"


def test_roots_must_be_absolute() -> None:
    assert parse_roots("/srv/git:/data/repos, /x") == (Path("/srv/git"), Path("/data/repos"), Path("/x"))
    with pytest.raises(ValueError, match="absolute"):
        parse_roots("repos")

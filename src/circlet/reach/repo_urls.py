"""Where a project's code may live: the forms of git URL a project may name, and who may name which.

git reads a location in one of these forms (git-fetch(1) "GIT URLS"), and so do we:
``<transport>::<address>`` (a remote helper: ``ext::`` runs a command, ``fd::`` reads a descriptor),
``scheme://...``, scp-style ``[user@]host:path`` (a colon before any slash), else a local path.

An API caller names only network repositories (``https://``, ``ssh://``, scp-style, ``git://``); a
local path is the operator's to name (``circlet admin project create --repo PATH``), or the API's
under a prefix the operator allow-listed (``CIRCLET_LOCAL_REPO_ROOTS``). Nobody names anything under
``$CIRCLET_HOME``: it holds the mirrors of every organization's repositories, the database and keys.
Paths are judged after symbolic links are resolved.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from circlet.reach.network import Refused

REMOTE_HELPER = re.compile(r"^[A-Za-z0-9+.-]+::")
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
API_SCHEMES = ("https", "ssh", "git")
OPERATOR_SCHEMES = ("https", "http", "ssh", "git", "file")
DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}


@dataclass(frozen=True)
class RepoLocation:
    """A parsed location: ``kind`` is ``local`` (``path`` set) or a network scheme (``host``, ``port``)."""

    url: str
    kind: str
    host: str = ""
    port: int = 0
    path: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


def parse_location(url: str) -> RepoLocation:
    """The location ``url`` names, as git would read it; Refused for a form no one may use."""
    if not url or url.startswith("-"):
        raise Refused("not a repository URL or path")
    if REMOTE_HELPER.match(url):
        raise Refused(
            f"the transport '{url.split('::', 1)[0]}::' is not allowed (remote helpers reach into the server)"
        )
    scheme_match = SCHEME.match(url)
    if scheme_match:
        scheme = scheme_match.group(1).lower()
        if scheme not in OPERATOR_SCHEMES:
            raise Refused(f"the scheme '{scheme}://' is not a git transport this server uses")
        try:
            parts = urlsplit(url)
        except ValueError:  # e.g. an unclosed [IPv6 literal
            raise Refused("not a repository URL or path") from None
        if scheme == "file":
            return RepoLocation(url, "local", path=Path(unquote(parts.path)))
        try:
            port = parts.port or DEFAULT_PORTS[scheme]
        except ValueError:
            raise Refused("the URL's port is not a number from 1 to 65535") from None
        return RepoLocation(url, scheme, host=network_host(parts.hostname or ""), port=port)
    colon, slash = url.find(":"), url.find("/")
    if colon > 0 and (slash == -1 or colon < slash):
        host = url[:colon].rsplit("@", 1)[-1]
        if url[:colon].startswith("-"):
            raise Refused("not a repository URL or path")
        return RepoLocation(url, "ssh", host=network_host(host.strip("[]")), port=DEFAULT_PORTS["ssh"])
    return RepoLocation(url, "local", path=Path(url))


def network_host(host: str) -> str:
    if not host or host.startswith("-") or any(c in host for c in "/\\@ "):
        raise Refused("the URL names no host")
    return host


def under(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


@dataclass(frozen=True)
class RepoRules:
    """The operator's settings that decide which locations are allowed to whom."""

    home: Path
    local_roots: tuple[Path, ...] = ()

    def check_for_api(self, url: str) -> RepoLocation:
        """A location an organization's admin may give a project through the API; Refused otherwise."""
        location = parse_location(url)
        if location.is_local:
            self.check_local(location, operator=False)
        elif location.kind not in API_SCHEMES:
            raise Refused(
                f"only {', '.join(s + '://' for s in API_SCHEMES)} and scp-style (git@host:path) URLs are accepted"
            )
        return location

    def check_for_operator(self, url: str) -> RepoLocation:
        """A location the operator may give a project: any but the forbidden forms and $CIRCLET_HOME."""
        location = parse_location(url)
        if location.is_local:
            self.check_local(location, operator=True)
        return location

    def check_local(self, location: RepoLocation, *, operator: bool) -> Path:
        """The real path of an allowed local location (symbolic links resolved); Refused otherwise."""
        assert location.path is not None
        if not location.path.is_absolute():
            raise Refused("a local repository path must be absolute")
        real = location.path.resolve()
        if under(real, self.home.resolve()):
            raise Refused("the path is inside the server's data directory ($CIRCLET_HOME), which no project may name")
        if not operator and not any(under(real, root.resolve()) for root in self.local_roots):
            raise Refused(
                "a local path or file:// URL names a repository on the server itself: only the operator may "
                "create such a project (circlet admin project create --repo PATH), or allow a path prefix "
                "with CIRCLET_LOCAL_REPO_ROOTS"
            )
        return real

    def transports(self, location: RepoLocation) -> str:
        """``GIT_ALLOW_PROTOCOL`` for fetching an allowed location: its own transport only, so never
        ``ext`` or ``fd``, and ``file`` only for a local path (which the caller has checked)."""
        return "file" if location.is_local else location.kind


def parse_roots(text: str) -> tuple[Path, ...]:
    """``CIRCLET_LOCAL_REPO_ROOTS``: absolute paths separated by ``:`` or ``,``; ValueError if relative."""
    roots = tuple(Path(part.strip()) for part in re.split(r"[:,]", text) if part.strip())
    for root in roots:
        if not root.is_absolute():
            raise ValueError(f"CIRCLET_LOCAL_REPO_ROOTS: {root} is not an absolute path")
    return roots

"""scripts/test-image bootstraps from the Debian mirror of the machine's own APT configuration (every
source format), or from MIRROR when given; the repository names no mirror."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "test-image"

pytestmark = pytest.mark.skipif(shutil.which("apt-get") is None, reason="needs APT")


def print_mirror(etc: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """The script with APT reading its sources from ``etc`` instead of /etc/apt."""
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "sources.list.d").mkdir(exist_ok=True)
    conf = etc / "apt.conf"
    conf.write_text(
        f'Dir::Etc::sourcelist "{etc}/sources.list";\nDir::Etc::sourceparts "{etc}/sources.list.d";\n'
        f'Dir::Etc::parts "{etc}/none";\nDir::Etc::main "{conf}";\n'
    )
    clean = {k: v for k, v in os.environ.items() if k != "MIRROR"}
    return subprocess.run(
        [str(SCRIPT), "--print-mirror"],
        env={**clean, "APT_CONFIG": str(conf), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_mirror_comes_from_one_line_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.invalid/debian bookworm main\n"
        "deb [arch=amd64] http://security.mirror.invalid/debian-security bookworm-security main\n"
        "deb http://one-line.mirror.invalid/debian/ bookworm main contrib\n"
    )
    done = print_mirror(tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "http://one-line.mirror.invalid/debian"


def test_the_mirror_comes_from_deb822_sources_and_list_files(tmp_path: Path) -> None:
    parts = tmp_path / "sources.list.d"
    parts.mkdir(parents=True)
    (parts / "off.sources").write_text(
        "Types: deb\nURIs: http://disabled.mirror.invalid/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n"
    )
    (parts / "debian.sources").write_text(
        "Types: deb-src deb\nURIs: http://deb822.mirror.invalid/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    done = print_mirror(tmp_path)
    assert done.stdout.strip() == "http://deb822.mirror.invalid/debian", done.stderr

    (parts / "debian.sources").unlink()
    (parts / "other.list").write_text("deb http://trixie.mirror.invalid/debian trixie main\n")
    assert print_mirror(tmp_path).stdout.strip() == "http://trixie.mirror.invalid/debian"


def test_mirror_overrides_and_no_source_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("")
    done = print_mirror(tmp_path)
    assert done.returncode == 1 and "set MIRROR=URL" in done.stderr
    given = print_mirror(tmp_path, MIRROR="http://given.invalid/debian")
    assert given.stdout.strip() == "http://given.invalid/debian"


def test_no_mirror_host_is_written_in_the_script() -> None:
    text = SCRIPT.read_text()
    assert "debian.org" not in text and "http://" not in text

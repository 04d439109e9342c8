"""The documents that promise something are kept true by tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_compatibility_table_matches_the_served_operations() -> None:
    check = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "compatibility_table.py"), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 0, "docs/compatibility.md is stale: run python scripts/compatibility_table.py"


def test_readme_names_the_commands_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "circlet serve" in readme and "scripts/test" in readme
    assert "scripts/test" in (ROOT / ".ci" / "run").read_text()

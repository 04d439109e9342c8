"""The schedule tests drive the scheduler themselves: the app's own loop is off, and the schedules'
clock stands still at a time the test chooses (``ScheduleClock`` with speed 0) until the test moves it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from circlet.settings import Limits, Settings

# A Friday, 2026-12-04, 09:00 UTC.
START = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        home=tmp_path / "home",
        database_url=database_url,
        rate_limit_per_minute=0,
        auth_cache_seconds=0,
        limits=Limits(),
        scheduler=False,
        test_scheduler_clock=f"{START.timestamp()}:0",
    )

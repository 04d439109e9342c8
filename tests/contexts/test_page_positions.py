"""The context list's page positions: the fast reading of the tokens we issue gives the same rows as
the general one, and what is not such a token gets the same answers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from circlet.contexts.service import ContextService
from circlet.http.errors import BadRequest
from circlet.http.pagination import PageTokens

SCOPE = "contexts:org"


def service() -> ContextService:
    return ContextService(keyring=None, limits=None, page_tokens=PageTokens(b"key"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "created",
    [
        datetime(2025, 1, 1, 0, 0, 9, 1000, tzinfo=UTC),
        datetime(2025, 1, 1, 0, 0, 9, tzinfo=UTC),  # isoformat leaves the microseconds out
        datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
    ],
)
def test_fast_position_is_the_general_one_in_utc(created: datetime) -> None:
    contexts = service()
    last_id = uuid.uuid4()
    token = contexts.page_tokens.encode(SCOPE, [created.isoformat(), str(last_id)])
    fast_time, fast_id = contexts._context_position(token, SCOPE)
    slow_time, slow_id = contexts._position(token, SCOPE)
    assert fast_time.tzinfo is None
    assert fast_time == slow_time.astimezone(UTC).replace(tzinfo=None)
    assert type(fast_id) is uuid.UUID and fast_id == slow_id == last_id
    assert (str(fast_id), hash(fast_id), fast_id.hex) == (str(last_id), hash(last_id), last_id.hex)


@pytest.mark.parametrize(
    "position",
    [
        ["2025-01-01T00:00:09.001000+01:00", "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3c"],  # not UTC
        ["2025-01-01T00:00:09.001000", "6F1E8A2C-2B0E-4A8E-9D4C-0D6F0B1E2A3C"],  # naive, upper case
        ["2025-01-01T00:00:09.001000+00:00", "6f1e8a2c2b0e4a8e9d4c0d6f0b1e2a3c"],  # no dashes
    ],
)
def test_other_spellings_take_the_general_reading(position: list[str]) -> None:
    contexts = service()
    token = contexts.page_tokens.encode(SCOPE, position)
    fast_time, fast_id = contexts._context_position(token, SCOPE)
    slow_time, slow_id = contexts._position(token, SCOPE)
    assert (fast_time, fast_id) == (slow_time, slow_id)


@pytest.mark.parametrize(
    "position",
    [
        ["not a time+00:00", "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3c"],
        ["2025-01-01T00:00:09+01:00+00:00", "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3c"],
        ["2025-01-01T00:00:09.001000+00:00", "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3g"],
        ["2025-01-01T00:00:09.001000+00:00", "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e-a3c"],
        ["2025-01-01T00:00:09.001000+00:00", "{6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3}"],
        ["2025-01-01T00:00:09.001000+00:00"],
        [1, "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3c"],
        [],
    ],
)
def test_malformed_positions_are_refused_as_before(position: list[object]) -> None:
    contexts = service()
    token = contexts.page_tokens.encode(SCOPE, position)
    with pytest.raises(BadRequest, match="page-token is invalid"):
        contexts._position(token, SCOPE)
    with pytest.raises(BadRequest, match="page-token is invalid"):
        contexts._context_position(token, SCOPE)

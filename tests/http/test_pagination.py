"""Page tokens: the signature is HMAC-SHA256 exactly as before (tokens issued before still verify),
and anything we did not issue is a 400."""

from __future__ import annotations

import base64
import hashlib
import hmac

import orjson
import pytest

from circlet.http.errors import BadRequest
from circlet.http.pagination import SIGNATURE_BYTES, PageTokens

KEY = b"0123456789abcdef0123456789abcdef"


def reference_token(signing_key: bytes, scope: str, position: list[object]) -> str:
    """How tokens were made before the keyed states were precomputed: ``hmac.digest`` and base64."""
    key = hashlib.sha256(b"circlet-page-token" + signing_key).digest()
    payload = orjson.dumps([scope, *position])
    signature = hmac.digest(key, payload, "sha256")[:SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(signature + payload).decode().rstrip("=")


@pytest.mark.parametrize(
    "position",
    [
        ["2025-01-01T00:00:09.001000+00:00", "6f1e8a2c-2b0e-4a8e-9d4c-0d6f0b1e2a3c"],
        ["2025-01-01T00:00:09+00:00", "00000000-0000-0000-0000-000000000000"],
        ["a-name"],
        ["x" * 500, 1, None],
    ],
)
@pytest.mark.parametrize("signing_key", [KEY, b"", b"k" * 200])
def test_tokens_are_the_same_bytes_as_before(signing_key: bytes, position: list[object]) -> None:
    tokens = PageTokens(signing_key)
    token = tokens.encode("contexts:scope", position)
    assert token == reference_token(signing_key, "contexts:scope", position)
    assert tokens.decode(token, "contexts:scope") == position
    assert tokens.decode(reference_token(signing_key, "contexts:scope", position), "contexts:scope") == position


def test_anything_not_issued_here_is_refused() -> None:
    tokens = PageTokens(KEY)
    token = tokens.encode("contexts:a", ["2025-01-01T00:00:09.001000+00:00", "x"])
    bad = [
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        "garbage",
        "%%%",
        "é" + token,
        token[:10],
        PageTokens(b"another key").encode("contexts:a", ["2025-01-01T00:00:09.001000+00:00", "x"]),
    ]
    for value in bad:
        with pytest.raises(BadRequest, match="page-token is invalid"):
            tokens.decode(value, "contexts:a")
    with pytest.raises(BadRequest, match="does not belong to this listing"):
        tokens.decode(token, "contexts:b")


@pytest.mark.parametrize(
    "mangle", [lambda t: t[:5] + "!" + t[5:], lambda t: t[:5] + "!!!!" + t[5:], lambda t: t + "=="]
)
def test_decoding_reads_odd_characters_as_urlsafe_b64decode_did(mangle: object) -> None:
    tokens = PageTokens(KEY)
    token = mangle(tokens.encode("s", ["v"]))  # type: ignore[operator]
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except ValueError:
        expected: object = BadRequest
    else:
        expected = orjson.loads(raw[SIGNATURE_BYTES:])[1:]
    try:
        got: object = tokens.decode(token, "s")
    except BadRequest:
        got = BadRequest
    assert got == expected

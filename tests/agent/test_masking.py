"""Masking: a stream masked chunk by chunk equals the whole text masked at once, and never shows a
secret."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from circlet.agent.masking import MASK, Masker

ALPHABET = "ab*\n"  # small, so that secrets overlap, nest and repeat often


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[start:end] for start, end in zip(points, points[1:], strict=False)]


def stream_mask(masker: Masker, chunks: list[bytes]) -> bytes:
    stream = masker.stream()
    return b"".join(stream.feed(chunk) for chunk in chunks) + stream.finish()


@settings(max_examples=400, deadline=None)
@given(
    secrets=st.lists(st.text(alphabet="ab", min_size=1, max_size=7), max_size=4),
    text=st.text(alphabet=ALPHABET, max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=12),
)
def test_stream_equals_whole_and_hides_every_secret(secrets: list[str], text: str, cuts: list[int]) -> None:
    masker = Masker(secrets)
    data = text.encode()
    masked = stream_mask(masker, chunked(data, cuts))
    assert masked == masker.mask(data)
    for secret in secrets:
        if len(secret) >= 4:
            assert secret.encode() not in masked.replace(MASK, b"|")


@settings(max_examples=200, deadline=None)
@given(
    secrets=st.lists(st.text(min_size=4, max_size=10), min_size=1, max_size=3),
    text=st.text(max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_any_unicode_and_byte_level_cuts(secrets: list[str], text: str, cuts: list[int]) -> None:
    masker = Masker(secrets)
    data = (secrets[0] + text + secrets[-1]).encode()
    masked = stream_mask(masker, chunked(data, cuts))
    assert masked == masker.mask(data)
    assert secrets[0].encode() not in masked.replace(MASK, b"\x00")


@settings(deadline=None)
@given(text=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0, max_value=300), max_size=10))
def test_holds_back_at_most_longest_minus_one_bytes(text: bytes, cuts: list[int]) -> None:
    masker = Masker(["zzzzzzzz"])  # never in a text without z: output length equals input length
    stream = masker.stream()
    fed = emitted = 0
    for chunk in chunked(text.replace(b"z", b"y"), cuts):
        fed += len(chunk)
        emitted += len(stream.feed(chunk))
        assert fed - emitted <= 7
    assert emitted + len(stream.finish()) == fed


def test_longest_secret_wins_and_short_values_are_ignored() -> None:
    masker = Masker(["abcd", "abcdef", "xyz", ""])
    assert masker.mask(b"abcdefg abcd xyz") == b"********g ******** xyz"
    stream = masker.stream()
    assert stream.feed(b"abcd") == b""
    assert stream.feed(b"ef!") == b"********!"
    assert stream.finish() == b""


def test_output_that_cannot_begin_a_secret_leaves_at_once() -> None:
    stream = Masker(["s3cr3t-project-value"]).stream()
    assert stream.feed(b"1\n") == b"1\n"
    assert stream.feed(b"x s3cr") == b"x "
    assert stream.feed(b"3t-project-value!") == b"********!"
    assert stream.feed(b"s3cr3t-pro") == b""
    assert stream.feed(b"gress.") == b"s3cr3t-progress."
    assert stream.finish() == b""


def test_no_secrets_pass_output_through_at_once() -> None:
    stream = Masker([]).stream()
    assert stream.feed(b"hello") == b"hello"
    assert stream.finish() == b""

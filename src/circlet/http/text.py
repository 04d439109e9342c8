"""Text that every database and serializer accepts: no NUL characters (PostgreSQL text cannot hold
them) and no lone surrogates (not valid Unicode, so not valid JSON either). Request bodies use
``SafeStr``; URLs are checked by the request middleware."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, StrictStr


def check_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def is_storable_text(value: str) -> bool:
    try:
        check_text(value)
    except ValueError:
        return False
    return True


SafeStr = Annotated[StrictStr, AfterValidator(check_text)]

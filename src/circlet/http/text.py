"""Text that every database and serializer accepts: no NUL characters (PostgreSQL text cannot hold
them) and no lone surrogates (not valid Unicode, so not valid JSON either). Request bodies use
``SafeStr``; URLs are checked by the request middleware."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, StrictStr

from circlet.http.errors import BadRequest

# Unicode's control characters (Cc: C0, DEL, C1 with NEL) and its line and paragraph separators.
LINE_BREAKS_AND_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


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


def check_single_line_name(name: str, field: str) -> None:
    """The rule of every name people give things (contexts, groups, variables, schedules): one line of
    text, as CircleCI's names are. A line break in a name splits log lines, audit entries and the
    terminals that show it."""
    if LINE_BREAKS_AND_CONTROLS.search(name):
        raise BadRequest(
            f"{field}: a name is a single line: no line breaks (\\n, \\r, U+2028, U+2029) or other control characters."
        )

"""Request bodies of the Groups operations, as the spec describes them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from circlet.http.text import SafeStr


class CreateGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SafeStr
    description: SafeStr = ""

"""Request bodies of the Groups operations, as the spec describes them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, StrictStr


class CreateGroup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: StrictStr
    description: StrictStr = ""

"""Request bodies of the Context operations, as the spec describes them."""

from __future__ import annotations

import uuid
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, model_validator

from circlet.http.text import SafeStr


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContextOwner(Strict):
    """The spec's ``oneOf``: an owner by ``id`` (account or organization) or by ``slug``."""

    id: uuid.UUID | None = None
    slug: SafeStr | None = None
    type: Literal["account", "organization"] | None = None

    @model_validator(mode="after")
    def one_way_to_name_the_owner(self) -> Self:
        if (self.id is None) == (self.slug is None):
            raise ValueError("give exactly one of owner.id and owner.slug")
        if self.slug is not None and self.type == "account":
            raise ValueError("an owner given by slug must be of type organization")
        return self


class CreateContext(Strict):
    name: SafeStr
    owner: ContextOwner


class PutEnvironmentVariable(Strict):
    value: SafeStr


class CreateRestriction(Strict):
    restriction_type: Literal["project", "expression", "group"] | None = None
    restriction_value: SafeStr | None = None

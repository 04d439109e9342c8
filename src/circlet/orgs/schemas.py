"""Request bodies of the Organization operations, as the spec describes them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, StrictStr


class Lenient(BaseModel):
    """The spec allows properties beyond the listed ones here; they are ignored."""

    model_config = ConfigDict(extra="ignore")


class CreateOrganization(Lenient):
    name: StrictStr
    vcs_type: Literal["github", "bitbucket", "circleci"]


class CreateOrbAllowListEntry(Lenient):
    name: StrictStr
    prefix: StrictStr
    auth: Literal["github-oauth", "none", "bitbucket-oauth", "github-app"]

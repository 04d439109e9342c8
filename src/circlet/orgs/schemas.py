"""Request bodies of the Organization operations, as the spec describes them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from circlet.http.text import SafeStr


class Lenient(BaseModel):
    """The spec allows properties beyond the listed ones here; they are ignored."""

    model_config = ConfigDict(extra="ignore")


class CreateOrganization(Lenient):
    name: SafeStr
    vcs_type: Literal["github", "bitbucket", "circleci"]


class CreateOrbAllowListEntry(Lenient):
    name: SafeStr
    prefix: SafeStr
    auth: Literal["github-oauth", "none", "bitbucket-oauth", "github-app"]

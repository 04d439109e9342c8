"""Request bodies of the Rollback tag, and the deploy markers a job's `circleci run release` sends."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")

    component_name: str = Field(min_length=1, max_length=255)
    current_version: str = Field(min_length=1, max_length=255)
    environment_name: str = Field(min_length=1, max_length=255)
    target_version: str = Field(min_length=1, max_length=255)
    namespace: str | None = Field(None, max_length=255)
    reason: str | None = Field(None, max_length=2000)
    parameters: dict[str, Any] | None = None


class ReleaseMarker(BaseModel):
    """``circleci run release plan|update|log``, as the agent forwards it (docs/runner-protocol.md)."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["plan", "update", "log"]
    deploy_name: str = Field("default", min_length=1, max_length=255)
    environment_name: str | None = Field(None, min_length=1, max_length=255)
    component_name: str | None = Field(None, min_length=1, max_length=255)
    target_version: str | None = Field(None, min_length=1, max_length=255)
    namespace: str | None = Field(None, min_length=1, max_length=255)
    status: str | None = Field(None, max_length=16)
    failure_reason: str | None = Field(None, max_length=2000)

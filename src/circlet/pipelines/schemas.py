"""Request bodies of the Pipeline tag."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from circlet.http.text import SafeStr


class TriggerPipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    branch: SafeStr | None = None
    tag: SafeStr | None = None
    parameters: dict[str, Any] | None = None


class RefSpec(BaseModel):
    """``config`` and ``checkout`` of ``pipeline/run``. ``content`` (an inline config) is not in
    the spec, but real clients (the CircleCI MCP server) send it."""

    model_config = ConfigDict(extra="forbid")

    branch: SafeStr | None = None
    tag: SafeStr | None = None
    content: SafeStr | None = None


class RunPipeline(BaseModel):
    model_config = ConfigDict(extra="forbid")

    definition_id: SafeStr | None = None
    config: RefSpec | None = None
    checkout: RefSpec | None = None
    parameters: dict[str, Any] | None = None


class ContinuePipeline(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    continuation_key: SafeStr = Field(alias="continuation-key")
    configuration: SafeStr
    parameters: dict[str, Any] | None = None

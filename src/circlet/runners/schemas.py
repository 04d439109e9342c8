"""Request bodies of the runner protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from circlet.http.text import SafeStr


class Claim(BaseModel):
    model_config = ConfigDict(extra="ignore")

    resource_class: SafeStr
    runner_name: SafeStr = Field("", max_length=255)
    wait_seconds: float = Field(30, ge=0, le=30)


class StepEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: SafeStr = Field("", max_length=1024)
    status: Literal["running", "success", "failed", "canceled", "timedout", "skipped"]
    exit_code: int | None = None
    started_at: SafeStr | None = None
    ended_at: SafeStr | None = None


class Complete(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["success", "failed", "canceled", "timedout", "infrastructure_fail"]
    message: SafeStr | None = None


class CreateResourceClass(BaseModel):
    """``circleci runner resource-class create``'s body."""

    model_config = ConfigDict(extra="ignore")

    resource_class: SafeStr = Field(max_length=201)
    description: SafeStr = Field("", max_length=1024)


class CreateRunnerToken(BaseModel):
    """``circleci runner token create``'s body."""

    model_config = ConfigDict(extra="ignore")

    resource_class: SafeStr = Field(max_length=201)
    nickname: SafeStr = Field("", max_length=255)

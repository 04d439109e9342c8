"""Request bodies of the runner protocol."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr


class Claim(BaseModel):
    model_config = ConfigDict(extra="ignore")

    resource_class: StrictStr
    runner_name: StrictStr = Field("", max_length=255)
    wait_seconds: float = Field(30, ge=0, le=30)


class StepEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: StrictStr = Field("", max_length=1024)
    status: Literal["running", "success", "failed", "canceled", "timedout", "skipped"]
    exit_code: int | None = None
    started_at: StrictStr | None = None
    ended_at: StrictStr | None = None


class Complete(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["success", "failed", "canceled", "timedout", "infrastructure_fail"]
    message: StrictStr | None = None

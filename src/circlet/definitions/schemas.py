"""Request bodies of the Pipeline Definition and Trigger tags."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from circlet.http.text import SafeStr


class SourceRepo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    external_id: SafeStr | None = None


class ConfigSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: SafeStr | None = None
    repo: SourceRepo | None = None
    file_path: SafeStr | None = None


class CheckoutSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: SafeStr | None = None
    repo: SourceRepo | None = None


class DefinitionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: SafeStr | None = None
    description: SafeStr | None = None
    config_source: ConfigSource | None = None
    checkout_source: CheckoutSource | None = None


class Webhook(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: SafeStr | None = None


class EventSource(BaseModel):
    model_config = ConfigDict(extra="forbid")

    provider: SafeStr | None = None
    repo: SourceRepo | None = None
    webhook: Webhook | None = None


EventPreset = Literal[
    "all-pushes",
    "only-tags",
    "default-branch-pushes",
    "only-build-prs",
    "only-open-prs",
    "only-labeled-prs",
    "only-merged-prs",
    "only-ready-for-review-prs",
    "only-branch-delete",
    "only-build-pushes-to-non-draft-prs",
    "only-merged-or-closed-prs",
]


class TriggerBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_source: EventSource | None = None
    event_preset: EventPreset | None = None
    checkout_ref: SafeStr | None = None
    config_ref: SafeStr | None = None
    event_name: SafeStr | None = None
    disabled: bool | None = None

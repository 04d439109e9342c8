"""Request bodies of the Workflow tag."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from circlet.http.text import SafeStr


class Rerun(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enable_ssh: bool | None = None
    from_failed: bool | None = None
    jobs: list[SafeStr] | None = None
    sparse_tree: bool | None = None

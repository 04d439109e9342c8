"""Request bodies of the Usage tag."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict


class CreateUsageExport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start: datetime
    end: datetime
    shared_org_ids: list[uuid.UUID] = []

"""The Insights tag has no request bodies; its query parameters' spellings, shared by its endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Query

Branch = Annotated[str | None, Query()]
AllBranches = Annotated[bool | None, Query(alias="all-branches")]
ReportingWindow = Annotated[str | None, Query(alias="reporting-window")]
PageToken = Annotated[str | None, Query(alias="page-token")]
StartDate = Annotated[datetime | None, Query(alias="start-date")]
EndDate = Annotated[datetime | None, Query(alias="end-date")]
Names = Annotated[list[str] | None, Query()]

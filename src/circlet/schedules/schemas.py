"""Request bodies of the Schedule operations, as the spec describes them (kebab-case keys).

The timetable is taken as a plain object and checked by ``circlet.schedules.timetable``, which names
the key at fault in words (and tells a client still sending the 2021 preview's snake_case keys)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from circlet.http.text import SafeStr

ParameterValue = StrictInt | StrictBool | SafeStr


class CreateSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: SafeStr
    timetable: dict[str, Any]
    attribution_actor: Literal["current", "system"] = Field(alias="attribution-actor")
    parameters: dict[SafeStr, ParameterValue]
    description: SafeStr | None = None


class UpdateSchedule(BaseModel):
    """Every field optional; ``description: null`` clears the description."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: SafeStr | None = None
    timetable: dict[str, Any] | None = None
    attribution_actor: Literal["current", "system"] | None = Field(None, alias="attribution-actor")
    parameters: dict[SafeStr, ParameterValue] | None = None
    description: SafeStr | None = None

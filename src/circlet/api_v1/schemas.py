"""Request bodies of the API v1.1 operations."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from circlet.http.text import SafeStr


class Lenient(BaseModel):
    """CircleCI's v1.1 clients send what they send; fields circlet does not use are ignored."""

    model_config = ConfigDict(extra="ignore")


class AddSshKey(Lenient):
    """``hostname`` empty or absent: the key is for every host."""

    hostname: SafeStr | None = None
    private_key: SafeStr


class DeleteSshKey(Lenient):
    """``hostname`` absent: the key is removed for every hostname it was added for."""

    fingerprint: SafeStr
    hostname: SafeStr | None = None

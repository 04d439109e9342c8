"""Routers of the public API. Each carries the ``/api/v2`` prefix itself, so that a route's path is
the full template (what the access log and the served spec show)."""

from __future__ import annotations

from fastapi import APIRouter

API_PREFIX = "/api/v2"


def api_router(tag: str) -> APIRouter:
    return APIRouter(prefix=API_PREFIX, tags=[tag])

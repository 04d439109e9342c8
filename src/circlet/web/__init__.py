"""The web app: server-rendered pages at CircleCI's app URLs, on the API's port, made from the same
services the API uses (see docs/web.md)."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

STATIC_DIRECTORY = Path(__file__).parent / "static"


def mount_web(app: FastAPI) -> None:
    """The pages' routes and the static files (stylesheet, htmx) under ``/static/web``."""
    from circlet.web.badges import router as badges_router
    from circlet.web.endpoints import router as sign_in_router
    from circlet.web.pages import router as pages_router
    from circlet.web.settings_pages import router as settings_router

    app.include_router(sign_in_router)
    app.include_router(pages_router)
    app.include_router(settings_router)
    app.include_router(badges_router)
    app.mount("/static/web", StaticFiles(directory=STATIC_DIRECTORY), name="web-static")

"""The ASGI application: routers, middleware, shared state and the operator endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import orjson
from fastapi import FastAPI, Request
from sqlalchemy import text
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from circlet.api_v1.endpoints import private_router as legacy_private_router
from circlet.api_v1.endpoints import router as legacy_router
from circlet.api_v1.service import LegacyService
from circlet.api_v1.signed_urls import OutputUrlSigner
from circlet.auth import Authenticator
from circlet.blobs import FileBlobStore
from circlet.config import ExpansionLimits
from circlet.contexts.endpoints import router as contexts_router
from circlet.contexts.service import ContextService
from circlet.db.engine import Database, create_database
from circlet.db.migrate import upgrade_to_head
from circlet.definitions.endpoints import definitions_router, triggers_router
from circlet.definitions.service import DefinitionService
from circlet.deploys.endpoints import rollback_router
from circlet.deploys.endpoints import router as deploys_router
from circlet.deploys.service import DeployService
from circlet.engine.compiling import CompilePool
from circlet.engine.loops import EngineLoops
from circlet.engine.orchestrator import Orchestrator
from circlet.engine.wakeups import TaskSignal
from circlet.groups.endpoints import router as groups_router
from circlet.groups.service import GroupService
from circlet.hooks.endpoints import router as hooks_router
from circlet.hooks.polling import Poller
from circlet.hooks.service import HookService, TriggerRate
from circlet.http.errors import install_error_handlers
from circlet.http.hot_path import HotRoutesApp
from circlet.http.middleware import RequestMiddleware
from circlet.http.pagination import PageTokens
from circlet.http.responses import json_response
from circlet.http.routing import API_PREFIX, add_hot_routes
from circlet.insights.endpoints import router as insights_router
from circlet.insights.service import InsightsService
from circlet.jobs.endpoints import router as jobs_router
from circlet.jobs.service import JobService
from circlet.mirrors.git_mirror import GitMirrors
from circlet.openapi.spec import served_spec
from circlet.orgs.endpoints import router as orgs_router
from circlet.pipelines.endpoints import router as pipelines_router
from circlet.pipelines.service import PipelineService
from circlet.projects.endpoints import router as projects_router
from circlet.projects.service import ProjectService
from circlet.runners.endpoints import router as runners_router
from circlet.runners.service import RunnerService
from circlet.schedules.clock import ScheduleClock
from circlet.schedules.endpoints import router as schedules_router
from circlet.schedules.scheduler import Scheduler
from circlet.schedules.service import ScheduleService
from circlet.secrets import Keyring, load_keyring
from circlet.settings import Settings, credit_rates
from circlet.storage.service import StorageService
from circlet.storage.sweeper import BlobSweeper
from circlet.usage.endpoints import router as usage_router
from circlet.usage.service import UsageService
from circlet.users.endpoints import avatars_router
from circlet.users.endpoints import router as users_router
from circlet.web import mount_web
from circlet.web.service import WebService
from circlet.workflows.endpoints import router as workflows_router
from circlet.workflows.service import WorkflowService

ROUTERS = (
    contexts_router,
    users_router,
    avatars_router,
    orgs_router,
    groups_router,
    projects_router,
    pipelines_router,
    definitions_router,
    triggers_router,
    workflows_router,
    jobs_router,
    legacy_router,
    legacy_private_router,
    runners_router,
    schedules_router,
    hooks_router,
    insights_router,
    usage_router,
    deploys_router,
    rollback_router,
)


# The collector's young generation is collected every 700 net allocations by default: a request makes
# thousands of objects, nearly all freed by reference counting, so with 32 requests in flight most
# collections find little and traverse every young object of every request. 10x fewer of them;
# older generations keep their ratios.
SERVER_GC_THRESHOLDS = (7_000, 10, 10)


def serving_app() -> FastAPI:
    """The app ``circlet serve`` runs (uvicorn's factory): one per process, for the process's life."""
    return create_app(freeze_gc=True, warm_compile_workers=True)


def create_app(
    settings: Settings | None = None,
    *,
    migrate: bool = True,
    freeze_gc: bool = False,
    warm_compile_workers: bool = False,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.ensure_home()
        if migrate:
            upgrade_to_head(settings.resolved_database_url)
        keyring = load_keyring(settings.home, settings.secret_key, settings.previous_secret_keys)
        database = create_database(settings.resolved_database_url)
        attach_state(app, settings, database, keyring)
        if isinstance(app, HotRoutesApp):
            app.enable_hot_routes(settings.limits.request_body_bytes)  # the app is complete by now
        if freeze_gc:
            # In a server, everything made so far (modules, the app, its routes and schemas, SQLAlchemy's
            # mappers) lives as long as the process: moved out of the collector's generations, it is no
            # longer traversed by every full collection, which under load otherwise costs CPU and shows
            # as pauses in the latency tail. (Not for apps made and dropped in one process, as tests do:
            # frozen objects are never collected.)
            gc.collect()
            gc.freeze()
            gc.set_threshold(*SERVER_GC_THRESHOLDS)
        background = [
            asyncio.create_task(app.state.engine_loops.run_sweeps()),
            asyncio.create_task(app.state.blob_sweeper.run()),
            asyncio.create_task(Poller(database, app.state.hook_service).run()),
        ]
        if settings.scheduler:
            background.append(asyncio.create_task(app.state.scheduler.run()))
        if warm_compile_workers:  # a server's first pipeline does not wait for a worker to start
            background.append(asyncio.create_task(app.state.engine_loops.pool.warm()))
        if not database.is_sqlite:
            background.append(asyncio.create_task(app.state.task_signal.listen(database.url)))
        try:
            yield
        finally:
            for task in background:
                task.cancel()
            for task in background:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.engine_loops.stop()
            await database.dispose()

    app = HotRoutesApp(
        title="circlet",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    install_error_handlers(app)
    add_hot_routes(app)  # first: see circlet.http.routing.hot_router
    for router in ROUTERS:
        app.include_router(router)
    add_operator_routes(app)
    mount_web(app)
    app.add_middleware(
        BodyLimits, max_body_bytes=settings.limits.request_body_bytes, max_upload_bytes=settings.limits.upload_bytes
    )
    return app


UPLOAD_PATHS = "/api/v3/runner/tasks/"
# A forge's push of many commits can be large (GitHub's cap is 25 MB): its hooks take up to 10 MiB.
FORGE_HOOK_PATHS = ("/hooks/github/", "/hooks/gitlab/", "/hooks/gitea/")
FORGE_HOOK_BYTES = 10 * 1024 * 1024


class BodyLimits:
    """The request middleware, with the larger ``upload_bytes`` limit for the runner's storage uploads
    (``PUT /api/v3/runner/tasks/...``) and ``request_body_bytes`` for every other request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_upload_bytes: int) -> None:
        self._default = RequestMiddleware(app, max_body_bytes=max_body_bytes)
        self._uploads = RequestMiddleware(app, max_body_bytes=max_upload_bytes)
        self._forge_hooks = RequestMiddleware(app, max_body_bytes=max(max_body_bytes, FORGE_HOOK_BYTES))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "PUT" and scope["path"].startswith(UPLOAD_PATHS):
            await self._uploads(scope, receive, send)
        elif scope["type"] == "http" and scope["path"].startswith(FORGE_HOOK_PATHS):
            await self._forge_hooks(scope, receive, send)
        else:
            await self._default(scope, receive, send)


def attach_state(app: FastAPI, settings: Settings, database: Database, keyring: Keyring) -> None:
    app.state.settings = settings
    app.state.database = database
    app.state.keyring = keyring
    app.state.authenticator = Authenticator(
        database, cache_seconds=settings.auth_cache_seconds, rate_per_minute=settings.rate_limit_per_minute
    )
    page_tokens = PageTokens(keyring.derive("page-tokens"))
    app.state.web_service = WebService(keyring.derive("web-csrf"), cache_seconds=settings.auth_cache_seconds)
    app.state.context_service = ContextService(keyring, settings.limits, page_tokens)
    app.state.group_service = GroupService(page_tokens)
    app.state.project_service = ProjectService(keyring, settings.limits, settings.repo_rules())
    # The engine: the wake-up signal of the task queue, DAG progression, background processing.
    app.state.task_signal = signal = TaskSignal()
    orchestrator = Orchestrator(signal, keyring.derive("continuation-keys"), settings.shared_classes)
    app.state.mirrors = mirrors = GitMirrors(
        settings.home / "mirrors", app.state.project_service.repo_rules, settings.network_guard()
    )
    pool = CompilePool(
        workers=settings.compile_worker_count,
        timeout_seconds=settings.compile_timeout_seconds,
        memory_bytes=settings.compile_memory_mb * 2**20,
        per_org=settings.compiles_per_org_count,
    )
    app.state.engine_loops = engine_loops = EngineLoops(
        database,
        mirrors,
        orchestrator,
        pool,
        limits=expansion_limits(settings),
        attempts=settings.compile_attempts,
        retry_after=timedelta(seconds=settings.compile_retry_after_seconds),
    )
    app.state.pipeline_service = PipelineService(
        mirrors, engine_loops, orchestrator, app.state.project_service, page_tokens
    )
    app.state.definition_service = DefinitionService(keyring)
    app.state.hook_service = HookService(
        keyring,
        mirrors,
        app.state.pipeline_service,
        orchestrator,
        TriggerRate(settings.custom_webhook_rate_per_minute, burst=10),
    )
    app.state.workflow_service = WorkflowService(orchestrator)
    app.state.schedule_clock = clock = ScheduleClock.parse(settings.test_scheduler_clock)
    app.state.schedule_service = ScheduleService(app.state.project_service, page_tokens, clock)
    app.state.scheduler = Scheduler(database, app.state.pipeline_service, clock, settings.scheduler_poll_seconds)
    blobs = FileBlobStore(settings.home / "blobs")
    app.state.storage_service = StorageService(
        blobs,
        settings.limits.upload_bytes,
        test_results_per_job=settings.limits.test_results_per_job,
        artifacts_per_job=settings.limits.artifacts_per_job,
    )
    app.state.blob_sweeper = BlobSweeper(
        database, blobs, timedelta(days=settings.cache_retention_days), settings.blob_sweep_hours * 3600
    )
    app.state.job_service = JobService(orchestrator, app.state.project_service, settings.base_url, blobs, page_tokens)
    app.state.insights_service = InsightsService(
        app.state.project_service, page_tokens, credit_rates(settings.insights_credits_per_minute)
    )
    app.state.deploy_service = DeployService(page_tokens, app.state.pipeline_service, app.state.workflow_service)
    app.state.usage_service = UsageService(
        database,
        blobs,
        keyring.derive("usage-export-urls"),
        settings.base_url,
        credit_rates(settings.insights_credits_per_minute),
    )
    app.state.legacy_service = LegacyService(
        app.state.job_service, settings.base_url, OutputUrlSigner(keyring.derive("output-urls"))
    )
    app.state.runner_service = RunnerService(
        orchestrator,
        app.state.project_service,
        app.state.context_service,
        settings.base_url,
        timedelta(seconds=settings.runner_lease_seconds),
        settings.shared_classes,
        step_output_bytes=settings.limits.step_output_bytes_per_task,
    )


def expansion_limits(settings: Settings) -> ExpansionLimits:
    """The compiler's limits, as the operator set them (``CIRCLET_LIMITS__MATRIX_COMBINATIONS=...``)."""
    return ExpansionLimits(**{name: getattr(settings.limits, name) for name in ExpansionLimits.__dataclass_fields__})


def add_operator_routes(app: FastAPI) -> None:
    rendered_specs: dict[str, bytes] = {}

    @app.get(API_PREFIX + "/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> Response:
        server = str(request.base_url).rstrip("/") + API_PREFIX
        # Cutting down the 800 KB official spec costs milliseconds: do it once per server address,
        # and keep only a few addresses, as the Host header is the client's to choose.
        body = rendered_specs.get(server)
        if body is None:
            if len(rendered_specs) >= 8:
                rendered_specs.clear()
            body = rendered_specs[server] = orjson.dumps(served_spec(app, server))
        return Response(body, media_type="application/json")

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @app.get("/readyz", include_in_schema=False)
    async def readyz(request: Request) -> Response:
        database: Database = request.app.state.database
        try:
            async with database.reading() as session:
                await session.execute(text("SELECT 1"))
        except Exception:
            return json_response({"message": "database unavailable"}, 503)
        return json_response({"status": "ready"})

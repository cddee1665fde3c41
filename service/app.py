"""The app factory: settings, sessions, artifact store, classifier cache, broker, error handler, routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.db import session_factory
from core.errors import AppError
from core.queue import make_celery
from core.settings import Settings, get_settings
from core.storage import ArtifactStore
from core.sweeper import start_sweeper
from service.classifiers import ClassifierCache, serving_device
from service.limits import BodyLimit, RateLimiter
from service.metrics import Metrics, MetricsMiddleware
from service.rollout import CanarySplit, Serving
from service.routes import dashboard, health, jobs, keys, learners, plots, predict, rollout, tasks, versions
from service.routes.forget import router as forget_router
from service.routes.metrics import metrics_router
from service.routes.v2 import router as v2_router
from service.versions import SampleGrids

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = start_sweeper(settings, app.state.celery) if settings.sweep_interval_s > 0 else None
        yield
        if stop is not None:
            stop.set()

    app = FastAPI(
        title="dgm-serve",
        version="0.1.0",
        description="Continual class-incremental image classification (Dynamic Generative Memory).",
        lifespan=lifespan,
    )
    if settings.api_torch_threads:
        import torch

        torch.set_num_threads(settings.api_torch_threads)
    store = ArtifactStore(settings.artifacts)
    app.state.settings = settings
    app.state.sessions = session_factory(settings)
    app.state.store = store
    app.state.celery = make_celery(settings)
    device = serving_device(settings.serve_device)
    log.info("classifiers are served on %s", device)
    app.state.classifiers = ClassifierCache(store, settings.classifier_cache_size, device)
    app.state.sample_grids = SampleGrids(app.state.sessions, store, device)
    app.state.canary_split = CanarySplit()  # per process: service/rollout.py
    app.state.rate_limiter = RateLimiter(settings)
    app.add_middleware(BodyLimit, settings=settings)
    add_error_handlers(app)
    app.state.metrics = Metrics(app.state)  # per app: tests build several apps in one process
    app.state.serving = Serving(
        app.state.sessions, app.state.classifiers, app.state.canary_split, app.state.metrics
    )
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)  # outermost: counts every answer
    for module in (health, learners, tasks, jobs, versions, rollout, predict, keys, plots, dashboard):
        app.include_router(module.router)
    app.include_router(keys.sessions_router)
    app.include_router(forget_router)  # issue 11: forget a class, purge, delete a learner
    app.include_router(v2_router)
    app.include_router(metrics_router(settings.metrics_public))
    return app


def error_body(name: str, detail: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": name, "detail": detail}, status_code=status, headers=headers)


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError) -> JSONResponse:
        return error_body(type(exc).__name__, exc.detail, exc.status_code, exc.headers)

    from dgm.errors import DGMInputError  # create_app loaded torch already (serving_device)

    @app.exception_handler(DGMInputError)
    async def dgm_input_error(_request: Request, exc: DGMInputError) -> JSONResponse:
        # the library refusing input data (images, labels, classes) that reached it: a 400, like the
        # service's own InvalidInput; its message already says what to fix
        return error_body("InvalidInput", str(exc), 400)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's own refusals (unknown route, wrong method, unparsable body) in the same shape as ours
        if isinstance(exc.__cause__, AppError):  # e.g. the body limit, hit while FastAPI read the body
            return await app_error(_request, exc.__cause__)
        detail = str(exc.detail)
        if isinstance(exc.__cause__, RecursionError):  # json.loads recurses once per nesting level
            detail = "the request body is nested too deeply to parse; flatten it"
        name = HTTPStatus(exc.status_code).phrase.replace(" ", "").replace("-", "")
        return error_body(name, detail, exc.status_code, getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        return error_body("InvalidParameter", f"bad request: {problems}", 422)

"""Open Inference Protocol v2 (KServe / Triton HTTP REST), so existing clients can call the learners.

A learner is a model (same name) and its version numbers are the model's versions; without a version the
active one answers. One input `images`: FP32 (pixels in [0, 1]) or UINT8 (0..255), shape [N, C, H, W],
[N, H, W, C] or, for one channel, [N, H, W], as JSON `data` (flat or nested) or as binary tensor data
(Triton's extension, the default of `tritonclient`). Outputs: `label` (BYTES [N], class names) and
`score` (FP32 [N]); an output requested with the `classification` parameter k answers Triton's
"score:index:label" strings, BYTES [N, k]. Without a version a learner's canary or shadow rollout applies
(service/rollout.py); the response's `model_version` names the version that answered and its
`parameters.served_by` why (active, candidate or pinned). Errors are
`{"error": "<Kind>: <what to fix>", "detail": ...}`, since v2 clients show the `error` field.

The protocol's encoding (requests, answers, errors, the OpenAPI schema of the infer body) is in
service/v2codec.py; this module holds the routes.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.errors import AppError
from core.orm import Learner, ModelVersion
from core.settings import Settings
from service.deps import CeleryDep, PredictKey, RateLimiterDep, ServingDep, SessionsDep, SettingsDep, StoreDep
from service.limits import RateLimiter, identity
from service.rollout import Choice, Serving, choose, record_answer, score_shadow
from service.uploads import read_body
from service.v2codec import (
    EXTENSIONS,
    HEADER_LENGTH,
    INFER_DOC,
    infer_response,
    metadata_body,
    parse_input,
    requested_outputs,
    split_body,
    v2_error,
    version_number,
)
from service.views import get_learner, get_version, learner_named, readiness


class V2Route(APIRoute):
    """Answers this router's errors (auth included) in the protocol's shape instead of the v1 one."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def v2_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except AppError as exc:
                headers = getattr(exc, "headers", None)
                return v2_error(type(exc).__name__, exc.detail, exc.status_code, headers)
            except RequestValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
                return v2_error("InvalidParameter", f"bad request: {problems}", 422)

        return v2_handler


router = APIRouter(prefix="/v2", tags=["v2"], route_class=V2Route)


# ----- server: no key, like /healthz and /readyz -------------------------------------------------
@router.get("")
def server_metadata(request: Request) -> dict[str, Any]:
    return {"name": "dgm-serve", "version": request.app.version, "extensions": EXTENSIONS}


@router.get("/health/live")
def live() -> dict[str, bool]:
    return {"live": True}


@router.get("/health/ready")
def ready(settings: SettingsDep, sessions: SessionsDep, celery: CeleryDep, store: StoreDep) -> JSONResponse:
    """Ready when the database, broker and artifact store answer (the checks of /readyz)."""
    body, ok = readiness(settings, sessions, celery, store)
    return JSONResponse(body, status_code=200 if ok else 503)


# ----- models: the predict scope ---------------------------------------------------------------
@router.get("/models/{name}", dependencies=[PredictKey])
def model_metadata(name: str, sessions: SessionsDep) -> dict[str, Any]:
    return metadata(sessions, name, None)


@router.get("/models/{name}/versions/{version}", dependencies=[PredictKey])
def version_metadata(name: str, version: str, sessions: SessionsDep) -> dict[str, Any]:
    return metadata(sessions, name, version_number(version))


@router.get("/models/{name}/ready", dependencies=[PredictKey])
def model_ready(name: str, serving: ServingDep) -> dict[str, Any]:
    return readiness_of(serving, name, None)


@router.get("/models/{name}/versions/{version}/ready", dependencies=[PredictKey])
def version_ready(name: str, version: str, serving: ServingDep) -> dict[str, Any]:
    return readiness_of(serving, name, version_number(version))


@router.post("/models/{name}/infer", dependencies=[PredictKey], openapi_extra=INFER_DOC)
async def infer(
    name: str, request: Request, settings: SettingsDep, serving: ServingDep, limiter: RateLimiterDep
) -> Response:
    return await run_inference(request, settings, serving, limiter, name, None)


@router.post("/models/{name}/versions/{version}/infer", dependencies=[PredictKey], openapi_extra=INFER_DOC)
async def infer_version(
    name: str,
    version: str,
    request: Request,
    settings: SettingsDep,
    serving: ServingDep,
    limiter: RateLimiterDep,
) -> Response:
    return await run_inference(request, settings, serving, limiter, name, version_number(version))


def metadata(sessions: sessionmaker[Session], name: str, number: int | None) -> dict[str, Any]:
    with sessions() as s:
        learner = get_learner(s, name)
        if number is None:
            numbers = s.scalars(
                select(ModelVersion.number)
                .where(ModelVersion.learner_id == learner.id)
                .order_by(ModelVersion.number)
            ).all()
        else:
            numbers = [get_version(s, learner, number).number]
    return metadata_body(learner.name, list(numbers), tuple(learner.image_shape))


def readiness_of(serving: Serving, name: str, number: int | None) -> dict[str, Any]:
    """Ready when the version (default: the active one) exists and its classifier loads."""
    version, _ = serving.served(learner_named(serving.sessions, name), number)
    return {"name": name, "version": str(version.number), "ready": True}


# ----- inference -------------------------------------------------------------------------------
async def run_inference(
    request: Request,
    settings: Settings,
    serving: Serving,
    limiter: RateLimiter,
    name: str,
    number: int | None,
) -> Response:
    raw = await read_body(request, settings.max_upload_bytes)
    learner = await run_in_threadpool(learner_named, serving.sessions, name)
    # Parsing a large JSON tensor takes long: off the event loop, so other requests keep being answered
    req, binary = await run_in_threadpool(split_body, raw, request.headers.get(HEADER_LENGTH))
    shape = tuple(learner.image_shape)
    x = await run_in_threadpool(parse_input, req, binary, shape, settings.max_predict_images)
    wanted = requested_outputs(req)
    await limiter.charge_async(identity(request), "predict", len(x))
    choice, classes, probs = await run_in_threadpool(classify, serving, learner, number, x)
    version, served_by = choice.version.number, choice.served_by
    response = infer_response(learner.name, version, served_by, req, wanted, classes, probs)
    record_answer(serving.metrics, learner.name, choice, len(x))
    return response


def classify(
    serving: Serving, learner: Learner, number: int | None, x: np.ndarray
) -> tuple[Choice, list[str], np.ndarray]:
    """(the rollout's Choice, class names, N x K softmax scores), through the API's classifier cache.

    `number` (the path's version) pins a version; without it a canary or shadow rollout applies."""
    choice = choose(serving, learner, number)
    probs = choice.clf.scores(x)
    classes = list(choice.clf.classes)
    score_shadow(serving.metrics, learner.name, choice, x, [classes[j] for j in probs.argmax(1)])
    return choice, classes, probs

"""Prediction: JSON arrays or base64 images, multipart image files, or a raw .npy batch (fast path)."""

from __future__ import annotations

import base64
import binascii
import io
import json
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from core.datasets import check_npy_header
from core.errors import CorruptFile, InvalidInput, InvalidParameter
from core.images import check_pixels, decode_image, resize_batch, to_nchw
from core.orm import Learner
from core.schemas import Prediction, PredictRequest, PredictResponse
from service.deps import PredictKey, RateLimiterDep, ServingDep, SettingsDep
from service.limits import RateLimiter, identity
from service.rollout import Serving, choose, record_answer, score_shadow
from service.uploads import read_body, receive_form
from service.views import learner_named

router = APIRouter(prefix="/v1/learners", tags=["predict"])

PREDICT_DOC = {
    "requestBody": {
        "content": {
            "application/json": {"schema": PredictRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "top_k": {"type": "integer"},
                        "version": {"type": "integer"},
                    },
                }
            },
            "application/x-npy": {"schema": {"type": "string", "format": "binary"}},
        }
    },
    "parameters": [
        {
            "name": "top_k",
            "in": "query",
            "schema": {"type": "integer"},
            "description": "for .npy and multipart",
        },
        {
            "name": "version",
            "in": "query",
            "schema": {"type": "integer"},
            "description": "pin a version, for every body type (bypasses a rollout); default: the active "
            "version or the rollout's pick. A body or form `version` that differs answers 400",
        },
    ],
}


@router.post(
    "/{name}/predict", response_model=PredictResponse, dependencies=[PredictKey], openapi_extra=PREDICT_DOC
)
async def predict(
    name: str, request: Request, settings: SettingsDep, serving: ServingDep, limiter: RateLimiterDep
) -> Response:
    learner = await run_in_threadpool(learner_named, serving.sessions, name)
    shape = tuple(learner.image_shape)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit, query = settings.max_upload_bytes, request.query_params
    if ctype == "multipart/form-data":
        folder = Path(tempfile.mkdtemp(prefix="dgm-predict-"))
        try:
            form = await receive_form(request, limit, folder)
            if not form.files:
                raise InvalidInput("send images as multipart file fields (e.g. -F files=@digit.png)")
            x = np.stack(
                [decode_image(f.path.read_bytes(), shape, f.filename, resize=True) for f in form.files]
            )
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        top_k = _int(form.fields, query, "top_k", 1)
        version = pinned_version(_int(form.fields, None, "version", None), query, "form field")
    elif ctype in ("application/x-npy", "application/octet-stream"):
        x = _npy_batch(await read_body(request, limit), shape, limit)
        top_k, version = _int({}, query, "top_k", 1), pinned_version(None, query, "body")
    else:
        body = await run_in_threadpool(_json_body, await read_body(request, limit))  # off the event loop
        x = await run_in_threadpool(_images, body.images, shape)
        top_k, version = body.top_k, pinned_version(body.version, query, "JSON body")
    if len(x) > settings.max_predict_images:
        raise InvalidInput(f"{len(x)} images in one call; send at most {settings.max_predict_images}")
    owner = identity(request)  # whose predict quota the call draws on
    answer = await run_in_threadpool(_predict, serving, limiter, owner, learner, x, top_k, version)
    # Already a validated model: serialise it once here instead of letting FastAPI re-validate it.
    return Response(answer.model_dump_json(), media_type="application/json")


def _int(
    fields: Mapping[str, str], query: Mapping[str, str] | None, key: str, default: int | None
) -> int | None:
    """`key` from the form fields, else (when `query` is given) from the query string."""
    raw = fields.get(key, query.get(key) if query is not None else None)
    if raw in (None, ""):
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidParameter(f"{key} must be an integer, got {raw!r}") from exc


def pinned_version(in_body: int | None, query: Mapping[str, str], where: str) -> int | None:
    """The version the request pins: ?version= or the body's, for every body type; 400 when they differ.

    None: the learner's rollout (or its active version) decides."""
    in_query = _int({}, query, "version", None)
    if in_query is not None and in_body is not None and in_query != in_body:
        raise InvalidInput(
            f"the query string asks for version {in_query} but the {where} for version {in_body}; "
            "name the version once, or the same in both"
        )
    return in_body if in_body is not None else in_query


def _images(items: list[Any], shape: tuple[int, int, int]) -> np.ndarray:
    return np.stack([_image(item, shape, i) for i, item in enumerate(items)])


def _json_body(raw: bytes) -> PredictRequest:
    try:
        return PredictRequest.model_validate(json.loads(raw))
    except RecursionError as exc:
        raise InvalidInput('the JSON body is nested too deeply to parse; send {"images": [...]}') from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f'the body is not valid JSON ({exc}); send {{"images": [...]}}') from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise InvalidParameter(f"bad predict request: {problems}") from exc


def _image(item: Any, shape: tuple[int, int, int], i: int) -> np.ndarray:
    """One JSON image (base64 string or nested arrays) -> C x H x W float32 in [0, 1]."""
    if isinstance(item, str):
        data = item.split(",", 1)[1] if item.startswith("data:") else item
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CorruptFile(f"images[{i}]: not valid base64 ({exc})") from exc
        return decode_image(raw, shape, f"images[{i}]", resize=True).astype(np.float32) / 255
    try:
        arr = np.asarray(item)
    except ValueError as exc:
        raise InvalidInput(f"images[{i}]: ragged nested arrays; every row must have the same length") from exc
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise InvalidInput(f"images[{i}]: integer pixels must be in 0..255")
        arr = arr.astype(np.uint8)
    elif arr.dtype.kind != "f":
        raise InvalidInput(f"images[{i}]: pixels must be numbers (0..255 integers or floats in [0, 1])")
    arr = check_pixels(arr, what=f"images[{i}]")
    c, h, w = shape
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = arr.transpose(1, 2, 0)  # C x H x W -> H x W x C
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise InvalidInput(f"images[{i}]: shape {list(arr.shape)}; send H x W, H x W x C or C x H x W arrays")
    if arr.shape != (h, w, c):
        return resize_batch(arr[None], shape)[0].astype(np.float32) / 255
    out = arr.transpose(2, 0, 1)
    return out.astype(np.float32) / 255 if out.dtype == np.uint8 else out


def _npy_batch(raw: bytes, shape: tuple[int, int, int], limit: int) -> np.ndarray:
    check_npy_header(io.BytesIO(raw), len(raw), limit, "the .npy body")
    try:
        x = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise CorruptFile(f"the body is not a readable .npy array without pickles ({exc})") from exc
    x = check_pixels(x)
    try:
        return to_nchw(x, shape)
    except InvalidInput:
        return resize_batch(x, shape)  # another image size: resize to the learner's


def _predict(
    serving: Serving,
    limiter: RateLimiter,
    owner: str,
    learner: Learner,
    x: np.ndarray,
    top_k: int | None,
    number: int | None,
) -> PredictResponse:
    choice = choose(serving, learner, number)
    version, clf = choice.version, choice.clf
    k = 1 if top_k is None else top_k
    if not 1 <= k <= len(clf.classes):
        raise InvalidParameter(
            f"top_k must be in 1..{len(clf.classes)} (the classes of version {version.number})"
        )
    limiter.charge(owner, "predict", len(x))  # only a call that would answer
    labels, probs = clf.predict(x)
    score_shadow(serving.metrics, learner.name, choice, x, labels)
    record_answer(serving.metrics, learner.name, choice, len(x))
    order = np.argsort(-probs, axis=1)[:, :k]
    predictions = [
        Prediction(
            label=labels[i],
            score=float(probs[i, order[i, 0]]),
            top_k=[(clf.classes[j], float(probs[i, j])) for j in order[i]],
        )
        for i in range(len(x))
    ]
    return PredictResponse(
        learner=learner.name,
        version=version.number,
        served_by=choice.served_by,
        shadow_version=choice.shadow[0].number if choice.shadow else None,
        classes=list(clf.classes),
        predictions=predictions,
    )

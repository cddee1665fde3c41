"""The Open Inference Protocol v2 codec: decode an inference request (JSON, or JSON followed by binary
tensor data), encode the model metadata, the answer and the errors, and the OpenAPI schema of the infer
body. No database, classifier or app state here: the routes (service/routes/v2.py) look the learner up
and classify.

Errors are `{"error": "<Kind>: <what to fix>", "detail": ...}`, since v2 clients show the `error` field.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import Response
from fastapi.responses import JSONResponse

from core.errors import InvalidInput, InvalidParameter
from core.images import check_pixels, to_nchw

INPUT = "images"
OUTPUTS = ("label", "score")
PLATFORM = "pytorch_dgm"
DTYPES = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
HEADER_LENGTH = "inference-header-content-length"  # binary tensor data: JSON, then raw tensors
EXTENSIONS = ["binary_tensor_data", "classification"]


def v2_error(kind: str, detail: str, status: int, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": f"{kind}: {detail}", "detail": detail}, status_code=status, headers=headers)


_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string", "enum": [INPUT]},
        "datatype": {"type": "string", "enum": list(DTYPES)},
        "shape": {"type": "array", "items": {"type": "integer"}, "example": [1, 8, 8]},
        "data": {"type": "array", "items": {}, "description": "flat or nested numbers, row-major"},
        "parameters": {"type": "object", "description": "binary_data_size with the binary extension"},
    },
}
INFER_DOC = {
    "requestBody": {
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": _TENSOR, "minItems": 1, "maxItems": 1},
                        "outputs": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "name": {"type": "string", "enum": list(OUTPUTS)},
                                    "parameters": {
                                        "type": "object",
                                        "description": "binary_data (bool), classification (top k)",
                                    },
                                },
                            },
                        },
                        "parameters": {"type": "object", "description": "binary_data_output (bool)"},
                    },
                }
            }
        }
    }
}


def version_number(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 2**31 - 1:  # '²'.isdigit() is True
        raise InvalidParameter(f"model version must be a whole number from 1 to 2147483647, got {raw!r}")
    return int(raw)


def metadata_body(name: str, numbers: list[int], image_shape: tuple[int, int, int]) -> dict[str, Any]:
    """A model's metadata: its versions, its one input and its two outputs."""
    c, h, w = image_shape
    return {
        "name": name,
        "versions": [str(n) for n in numbers],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, c, h, w]}],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "score", "datatype": "FP32", "shape": [-1]},
        ],
    }


@dataclass
class Wanted:
    """One requested output: its name, binary or JSON, and k for Triton's classification format."""

    name: str
    binary: bool
    classification: int = 0


def split_body(raw: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON request and, with the binary extension, the raw tensor bytes after it."""
    cut = len(raw)
    if header_length is not None:
        length = header_length.strip()
        if not (length.isascii() and length.isdigit()) or int(length) > len(raw):
            raise InvalidInput(
                f"Inference-Header-Content-Length is {header_length!r} but the body has {len(raw)} bytes; "
                "send the length in bytes of the JSON part"
            )
        cut = int(header_length)
    try:
        req = json.loads(raw[:cut])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"the inference request is not valid JSON ({exc})") from exc
    except RecursionError as exc:
        raise InvalidInput("the inference request is nested too deeply to parse; send flat data") from exc
    if not isinstance(req, dict):
        raise InvalidInput('the inference request must be a JSON object: {"inputs": [...]}')
    return req, raw[cut:]


def parse_input(
    req: dict[str, Any], binary: bytes, image_shape: tuple[int, int, int], max_images: int
) -> np.ndarray:
    """The one input tensor -> N x C x H x W uint8 or float32 in [0, 1], every field checked."""
    tensor = one_input(req)
    dtype, shape = input_type(tensor, image_shape)
    count = int(np.prod(shape))
    if shape[0] > max_images:
        raise InvalidInput(f"{shape[0]} images in one call; send at most {max_images}")
    params = as_dict(tensor.get("parameters"), f"input '{INPUT}': parameters")
    if "shared_memory_region" in params:
        raise InvalidInput("shared memory inputs are not supported; send the data in the request body")
    if "binary_data_size" in params:
        size = params["binary_data_size"]
        if size != count * dtype.itemsize or size != len(binary):
            raise InvalidInput(
                f"input '{INPUT}': binary_data_size is {size} and {len(binary)} bytes follow the JSON, but "
                f"{tensor['datatype']} {shape} takes {count * dtype.itemsize} bytes"
            )
        x = np.frombuffer(binary, dtype=dtype)
    else:
        if binary:
            raise InvalidInput(f"{len(binary)} bytes follow the JSON but no input declares binary_data_size")
        x = json_data(tensor, tensor["datatype"], count, shape)
    x = check_pixels(x.reshape(shape), what=f"input '{INPUT}'")
    return to_nchw(x, image_shape, what=f"input '{INPUT}'")


def one_input(req: dict[str, Any]) -> dict[str, Any]:
    inputs = req.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInput(f"send exactly one input tensor, named '{INPUT}', in 'inputs'")
    tensor = inputs[0]
    if tensor.get("name") != INPUT:
        raise InvalidInput(f"unknown input {tensor.get('name')!r}; this model has one input, '{INPUT}'")
    return tensor


def input_type(tensor: dict[str, Any], image_shape: tuple[int, int, int]) -> tuple[np.dtype, list[int]]:
    c, h, w = image_shape
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in DTYPES:
        raise InvalidInput(
            f"input '{INPUT}' has datatype {datatype!r}; send FP32 (pixels in [0, 1]) or UINT8 (0..255)"
        )
    shape = tensor.get("shape")
    layouts = [[c, h, w], [h, w, c]] + ([[h, w]] if c == 1 else [])
    if (
        not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape)
        or shape[1:] not in layouts
        or shape[0] < 1
    ):
        want = " or ".join(str([-1, *lay]).replace("-1", "N") for lay in layouts)
        raise InvalidInput(f"input '{INPUT}' has shape {shape}; this model takes {want} with N >= 1")
    return DTYPES[datatype], shape


def json_data(tensor: dict[str, Any], datatype: str, count: int, shape: list[int]) -> np.ndarray:
    """`data` (flat or nested numbers) -> a flat array of `count` values of the declared datatype."""
    try:
        values = np.asarray(tensor.get("data"), dtype=np.float64).reshape(-1)
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            f"input '{INPUT}': data must be numbers, flat or nested with rows of equal length ({exc})"
        ) from exc
    if values.size != count:
        raise InvalidInput(f"input '{INPUT}' has {values.size} values but shape {shape} needs {count}")
    if datatype == "UINT8":
        if not (np.isfinite(values).all() and (values == np.round(values)).all()):
            raise InvalidInput(f"input '{INPUT}' is UINT8 but its data holds non-integer values")
        if values.min() < 0 or values.max() > 255:
            lo, hi = values.min(), values.max()
            raise InvalidInput(f"input '{INPUT}' is UINT8 (0..255) but its data lies in [{lo:g}, {hi:g}]")
        return values.astype(np.uint8)
    return values.astype(np.float32)


def requested_outputs(req: dict[str, Any]) -> list[Wanted]:
    params = as_dict(req.get("parameters"), "parameters")
    default_binary = bool(params.get("binary_data_output", False))
    outputs = req.get("outputs")
    if outputs is None:
        return [Wanted(name, default_binary) for name in OUTPUTS]
    if not isinstance(outputs, list) or not outputs:
        raise InvalidInput(f"'outputs' must be a non-empty list of {{\"name\": ...}}; names: {list(OUTPUTS)}")
    wanted = []
    for out in outputs:
        name = out.get("name") if isinstance(out, dict) else None
        if name not in OUTPUTS:
            raise InvalidInput(f"unknown output {name!r}; this model's outputs are {list(OUTPUTS)}")
        p = as_dict(out.get("parameters"), f"output {name!r}: parameters")
        if "shared_memory_region" in p:
            raise InvalidInput("shared memory outputs are not supported; leave shared_memory_region out")
        k = p.get("classification", 0)
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise InvalidParameter(f"output {name!r}: classification must be a whole number, got {k!r}")
        wanted.append(Wanted(name, bool(p.get("binary_data", default_binary)), k))
    return wanted


def as_dict(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


def encode_output(w: Wanted, classes: list[str], probs: np.ndarray, into: list[dict[str, Any]]) -> bytes:
    """Append the output's JSON to `into`; return its binary data (b"" when it travels as JSON)."""
    best = probs.argmax(1)
    if w.classification:
        if w.classification > len(classes):
            raise InvalidParameter(
                f"output {w.name!r}: classification {w.classification} exceeds the {len(classes)} classes"
            )
        order = np.argsort(-probs, axis=1)[:, : w.classification]
        values: list[Any] = [f"{probs[i, j]:f}:{j}:{classes[j]}" for i, row in enumerate(order) for j in row]
        datatype, shape = "BYTES", [len(probs), w.classification]
    elif w.name == "label":
        values, datatype, shape = [classes[j] for j in best], "BYTES", [len(probs)]
    else:
        values, datatype, shape = probs[np.arange(len(probs)), best].astype(np.float32), "FP32", [len(probs)]
    tensor: dict[str, Any] = {"name": w.name, "datatype": datatype, "shape": shape}
    into.append(tensor)
    if not w.binary:
        tensor["data"] = values if datatype == "BYTES" else [float(v) for v in values]
        return b""
    raw = (
        b"".join(struct.pack("<I", len(b)) + b for b in (v.encode() for v in values))
        if datatype == "BYTES"
        else np.asarray(values, dtype="<f4").tobytes()
    )
    tensor["parameters"] = {"binary_data_size": len(raw)}
    return raw


def infer_response(
    model_name: str,
    version: int,
    served_by: str,
    req: dict[str, Any],
    wanted: list[Wanted],
    classes: list[str],
    probs: np.ndarray,
) -> Response:
    """The answer: JSON alone, or, when an output travels as binary, the JSON followed by the raw tensors."""
    body: dict[str, Any] = {
        "model_name": model_name,
        "model_version": str(version),
        "parameters": {"served_by": served_by},
        "outputs": [],
    }
    if "id" in req:
        body["id"] = req["id"]
    tail = [encode_output(w, classes, probs, body["outputs"]) for w in wanted]
    header = json.dumps(body).encode()
    if not any(tail):
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(tail),
        media_type="application/octet-stream",
        headers={"Inference-Header-Content-Length": str(len(header))},
    )

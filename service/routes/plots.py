"""PNG charts of a learner's history for reports: accuracy matrix, A_t curve, capacity growth."""

from __future__ import annotations

from fastapi import APIRouter, Response

from service.charts import render_chart
from service.deps import AnyKey, SessionDep

router = APIRouter(prefix="/v1/learners", tags=["plots"])

PNG = {200: {"content": {"image/png": {}}, "description": "a PNG chart"}}


@router.get("/{name}/plots/{kind}.png", response_class=Response, dependencies=[AnyKey], responses=PNG)
def learner_plot(name: str, kind: str, session: SessionDep) -> Response:
    """`accuracy.png` (versions x tasks heatmap), `at.png` (A_t curve), `capacity.png` (growth)."""
    return Response(render_chart(session, name, kind), media_type="image/png")

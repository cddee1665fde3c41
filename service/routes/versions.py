"""Model versions: list, activate (roll back or forward), and the generator's sample grid."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.concurrency import run_in_threadpool

from core.schemas import VersionRead
from service.deps import AdminKey, AnyKey, SampleGridsDep, SessionDep
from service.versions import activate_number
from service.views import get_learner, versions_read

router = APIRouter(prefix="/v1/learners", tags=["versions"])


@router.get("/{name}/versions", response_model=list[VersionRead], dependencies=[AnyKey])
def list_versions(name: str, session: SessionDep) -> list[VersionRead]:
    return versions_read(session, get_learner(session, name))


@router.post("/{name}/versions/{number}/activate", response_model=VersionRead, dependencies=[AdminKey])
def activate_version(name: str, number: int, session: SessionDep) -> VersionRead:
    """Serve version `number` from now on; the learner's next task also trains from it.

    A held version (the regression gate kept it back) may be activated: it becomes published.
    """
    return activate_number(session, name, number)


@router.get(
    "/{name}/versions/{number}/samples.png",
    response_class=Response,
    dependencies=[AnyKey],
    responses={200: {"content": {"image/png": {}}}},
)
async def version_samples(
    name: str,
    number: int,
    grids: SampleGridsDep,
) -> Response:
    png = await run_in_threadpool(grids.png, name, number)
    return Response(png, media_type="image/png")

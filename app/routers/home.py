"""The browser dashboard: `GET /` serves app/static/index.html (plain ES modules under /static, no build step)
and `GET /dashboard/options` the choices its forms offer."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from pydantic import BaseModel

from effdet.config import MODEL_NAMES

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
"""The dashboard's files, mounted at /static by the app factory."""

router = APIRouter(tags=["home"])


class DashboardOptions(BaseModel):
    """What the dashboard's job form lets a user pick."""

    models: list[str]


@router.get("/", response_class=FileResponse, include_in_schema=False)
def home() -> FileResponse:
    """The dashboard page (datasets, jobs with live progress, models with a try-it box)."""
    return FileResponse(STATIC_DIR / "index.html", media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/dashboard/options", include_in_schema=False)
def dashboard_options() -> DashboardOptions:
    """The model variants the job form offers (the API's own list, so the two never disagree)."""
    return DashboardOptions(models=list(MODEL_NAMES))

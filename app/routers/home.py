"""The root page: a placeholder for the dashboard, linking to the API documentation."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["home"])

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>effdet-service</title></head>
<body><h1>effdet-service</h1>
<p>Fine-tune and serve EfficientDet detectors.</p>
<ul><li><a href="docs">API documentation (Swagger UI)</a></li><li><a href="redoc">ReDoc</a></li>
<li><a href="openapi.json">OpenAPI schema</a></li><li><a href="healthz">health</a></li></ul>
</body></html>
"""


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def home() -> str:
    """A small HTML page with links to the API documentation (the dashboard will live here)."""
    return PAGE

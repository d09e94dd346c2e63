"""Pretrained checkpoints available to jobs (what the operator put in DATA_DIR/checkpoints)."""

from __future__ import annotations

from fastapi import APIRouter

from app.auth import TRAIN, CurrentOwner
from app.deps import SettingsDep
from app.pretrained import list_checkpoints
from app.schemas import AUTH_RESPONSES, CheckpointsPublic

router = APIRouter(prefix="/v1/checkpoints", tags=["checkpoints"], responses=AUTH_RESPONSES, dependencies=[TRAIN])


@router.get("")
def get_checkpoints(settings: SettingsDep, _owner: CurrentOwner) -> CheckpointsPublic:
    """The checkpoints a job may name as `pretrained`, with a format guess and size."""
    items = list_checkpoints(settings)
    return CheckpointsPublic(items=items, count=len(items))

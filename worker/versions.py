"""A fixed dataset version's upload: its parent's records with the accepted fixes applied, zipped as a TFRecord
upload (train.tfrecord and val.tfrecord, so the conversion keeps the parent's split), which the conversion then
validates like any upload. Written atomically: a conversion that dies meanwhile builds it again.
"""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path

from pydantic import BaseModel

from core import layout
from core.db import session_scope
from core.settings import get_settings
from core.store import dataset_records
from core.tables import Dataset
from effdet.data.fixes import BoxFix


class VersionFixes(BaseModel):
    """What DATA_DIR/datasets/<id>/fixes.json holds: the parent dataset and the fixes to apply to its records."""

    parent_id: str
    fixes: list[BoxFix]


def build_fixed_upload(folder: Path) -> None:
    """Write folder/upload.zip from the parent's records and the fixes in folder/fixes.json."""
    from effdet.data.fixes import apply_fixes
    from effdet.data.layout import TRAIN_SHARDS, VAL_SHARDS

    wanted = VersionFixes.model_validate_json((folder / layout.FIXES_FILE).read_text())
    with session_scope() as session:
        parent = session.get(Dataset, wanted.parent_id)
        if parent is None or not parent.label_map:
            raise ValueError(f"the dataset this version fixes ({wanted.parent_id}) was deleted or is not ready")
        label_ids = {str(name): int(key) for key, name in parent.label_map.items()}
    records = dataset_records(get_settings(), wanted.parent_id)
    files = {
        split: sorted(str(p) for p in records.glob(pattern))
        for split, pattern in (("train", TRAIN_SHARDS), ("val", VAL_SHARDS))
    }
    with tempfile.TemporaryDirectory(dir=folder, prefix=".fixes-") as scratch:
        written = apply_fixes({k: v for k, v in files.items() if v}, wanted.fixes, label_ids, Path(scratch) / "records")
        part = Path(scratch) / "upload.zip"
        with zipfile.ZipFile(part, "w", zipfile.ZIP_STORED) as archive:
            for split in written:
                archive.write(Path(scratch) / "records" / f"{split}.tfrecord", f"{split}.tfrecord")
        part.replace(folder / layout.UPLOAD_FILE)

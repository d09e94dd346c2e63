"""Job start to first training step with the S3 store (issue 21): a worker machine whose cache is cold fetches the
dataset's records first; a warm one finds them in DATA_DIR/cache. The raccoon set is converted once and published
as a dataset's records; then D0 at 512, batch 4, is started twice on fresh run folders, timing the fetch and the
first step.

Usage: .venv/bin/python -m bench.store_cold_start [--endpoint URL]
Without --endpoint a moto server is started on 127.0.0.1. One JSON line per start (cold, warm): the seconds to
fetch the records, to the first step, and the records' MB.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from bench.common import RACCOON, emit
from core.store import ObjectStore
from tests.helpers.s3 import CREDENTIALS, new_bucket, s3_server


def _start(store: ObjectStore, prefix: str, run: Path) -> dict[str, float]:
    """Fetch the records and train until the first step is reported; the seconds of each part."""
    from effdet.train import TrainOptions
    from effdet.workflow import Records, fine_tune, resolve_config

    began = time.perf_counter()
    records = Records(store.fetch(prefix))
    fetched = time.perf_counter()
    first: list[float] = []

    def progress(report: object) -> None:
        if not first and getattr(report, "step", 0) >= 1:
            first.append(time.perf_counter())

    config = resolve_config("efficientdet-d0", records.report(), None)
    fine_tune(config, records, run, TrainOptions(num_steps=1, batch_size=4), on_progress=progress)
    return {
        "fetch_s": round(fetched - began, 2),
        "to_first_step_s": round((first or [time.perf_counter()])[0] - began, 2),
    }


def _run(endpoint: str, root: Path) -> None:
    from effdet.data.convert import convert_dataset

    records = root / "records"
    convert_dataset(RACCOON, records, format="voc", val_fraction=0.1)
    megabytes = sum(p.stat().st_size for p in records.rglob("*") if p.is_file()) / 2**20
    url = f"s3://{new_bucket(endpoint)}/bench"
    prefix = "datasets/raccoon/tfrecords"
    ObjectStore(url, root / "publisher").publish(prefix, records)
    worker = ObjectStore(url, root / "worker-cache")
    for cache in ("cold", "warm"):
        figures = _start(worker, prefix, root / f"run-{cache}")
        emit("store_cold_start", cache=cache, records_mb=round(megabytes, 1), **figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--endpoint", default=None, help="an S3 endpoint (default: start a moto server)")
    args = parser.parse_args()
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        if args.endpoint:
            os.environ["AWS_ENDPOINT_URL"] = args.endpoint
            _run(args.endpoint, root)
            return
        with s3_server(root / "moto.log") as endpoint:
            os.environ["AWS_ENDPOINT_URL"] = endpoint
            _run(endpoint, root)


if __name__ == "__main__":
    main()

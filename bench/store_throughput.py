"""Artefact store throughput (issue 21): publish a model-sized tree to an S3-compatible server and fetch it into a
cold cache, then again into a warm one, through core.store (obstore), with boto3's managed transfer of the same
files for comparison.

Usage: .venv/bin/python -m bench.store_throughput [--mb 64] [--files 4] [--rounds 3] [--endpoint URL]
Without --endpoint a moto server is started on 127.0.0.1 (what this machine can run; MinIO or AWS are faster or
farther, so the figures are for comparing libraries, not for sizing a deployment). One JSON line: MB/s of each
transfer and the warm fetch's seconds (the cache hit: one small GET of the completion record), medians of
`--rounds` rounds, each on a fresh bucket.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import QUICK, emit
from core.store import ObjectStore
from tests.helpers.s3 import CREDENTIALS, new_bucket, s3_server


def _tree(folder: Path, megabytes: int, files: int) -> Path:
    folder.mkdir(parents=True)
    size = megabytes * 2**20 // files
    for index in range(files):
        (folder / f"part-{index}.bin").write_bytes(os.urandom(size))
    return folder


def _boto3_rates(endpoint: str, bucket: str, folder: Path, scratch: Path) -> tuple[float, float]:
    """MB/s of boto3's upload_file / download_file for the same files."""
    import boto3

    client = boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_REGION"])
    files = sorted(folder.iterdir())
    megabytes = sum(p.stat().st_size for p in files) / 2**20
    start = time.perf_counter()
    for path in files:
        client.upload_file(str(path), bucket, f"boto3/{path.name}")
    upload = megabytes / (time.perf_counter() - start)
    start = time.perf_counter()
    for path in files:
        client.download_file(bucket, f"boto3/{path.name}", str(scratch / path.name))
    return upload, megabytes / (time.perf_counter() - start)


def _once(endpoint: str, tree: Path, root: Path) -> dict[str, float]:
    """One round on a fresh bucket: seconds to publish, cold fetch, warm fetch; boto3's MB/s both ways."""
    bucket = new_bucket(endpoint)
    worker = ObjectStore(f"s3://{bucket}/bench", root / f"{bucket}-worker")
    api = ObjectStore(f"s3://{bucket}/bench", root / f"{bucket}-api")
    seconds = {}
    for name, step in (
        ("publish", lambda: worker.publish("models/m", tree)),
        ("cold", lambda: api.fetch("models/m")),
        ("warm", lambda: api.fetch("models/m")),
    ):
        start = time.perf_counter()
        step()
        seconds[name] = time.perf_counter() - start
    (root / f"{bucket}-boto3").mkdir()
    seconds["boto3_up"], seconds["boto3_down"] = _boto3_rates(endpoint, bucket, tree, root / f"{bucket}-boto3")
    return seconds


def run(endpoint: str, megabytes: int, files: int, rounds: int) -> dict[str, object]:
    for name, value in {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}.items():
        os.environ[name] = value
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        tree = _tree(root / "model", megabytes, files)
        results = [_once(endpoint, tree, root) for _ in range(rounds)]

    def median(key: str) -> float:
        return statistics.median(result[key] for result in results)

    return emit(
        "store_throughput",
        megabytes=megabytes,
        files=files,
        rounds=rounds,
        obstore_publish_mb_s=round(megabytes / median("publish"), 1),
        obstore_cold_fetch_mb_s=round(megabytes / median("cold"), 1),
        warm_fetch_s=round(median("warm"), 4),
        boto3_upload_mb_s=round(median("boto3_up"), 1),
        boto3_download_mb_s=round(median("boto3_down"), 1),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=16 if QUICK else 64)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="medians over this many rounds")
    parser.add_argument("--endpoint", default=None, help="an S3-compatible endpoint (default: start moto)")
    args = parser.parse_args()
    if args.endpoint:
        run(args.endpoint, args.mb, args.files, args.rounds)
        return
    with tempfile.TemporaryDirectory() as logs, s3_server(Path(logs) / "moto.log") as endpoint:
        run(endpoint, args.mb, args.files, args.rounds)


if __name__ == "__main__":
    main()

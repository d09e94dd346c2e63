"""Conversion speed: our converter against google/automl's `create_pascal_tfrecord.py` on the same image files.

Usage: .venv/bin/python -m bench.convert_speed [--ccpd-images 50000] [--unique 5000 | --scenes DIR]
           [--automl-python /tmp/automl-venv/bin/python --automl-repo CHECKOUT]
Two datasets: raccoon (VOC, 200 photos) and a synthetic set in CCPD file-name form at 480x360 (raccoon's size):
`--unique` scenes from `effdet synth`, copied into folders until there are `--ccpd-images` files, each copy with
its own JPEG comment so that no file is a byte-identical duplicate (each is validated and written).
Ours runs as `effdet convert` in a fresh process: wall seconds with start-up, the conversion alone (timed inside
the process, TensorFlow already imported, as in the service's worker) and peak RSS. automl's script runs in its
own venv (TensorFlow 2.15; it needs the VOC devkit layout, made of symlinks to the same images and XML written
from the names); its start-up is a run of one image, subtracted for its rate (none when that leaves under a
second). One JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PIL import Image

from bench.common import QUICK, RACCOON, REPO, emit
from effdet.data.ingest import read_dataset
from effdet.data.records import Record
from effdet.data.synthetic import write_dataset

SCENE = (480, 360)
AUTOML_YEAR = "VOC2012"
TIMED = """
import json, resource, sys, time
from pathlib import Path
import tensorflow
from effdet.data.convert import convert_dataset
start = time.perf_counter()
report = convert_dataset(Path(sys.argv[1]), Path(sys.argv[2]), format=sys.argv[3])
seconds = time.perf_counter() - start
images = sum(split.images for split in report.splits.values())
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"images": images, "seconds": seconds, "rss_mb": rss_mb}))
"""
AUTOML_WRAPPER = """
import atexit, resource, runpy, sys
atexit.register(lambda: sys.stderr.write("MAXRSS %d\\n" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def ccpd_set(folder: Path, total: int, scenes: Path) -> Path:
    """`total` CCPD-named JPEGs under folder/ccpd: the scenes, copied into sub-folders, each copy with a comment."""
    names = sorted(path.name for path in scenes.iterdir())
    root = folder / "ccpd"
    for index in range(total):
        copy, position = divmod(index, len(names))
        target = root / f"part{copy:03d}" / names[position]
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (scenes / names[position]).read_bytes()
        comment = f"copy {copy}".encode()
        # A COM segment right after SOI: same pixels, other bytes.
        target.write_bytes(data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:])
    return root


def voc_devkit(records: Iterable[Record], folder: Path) -> Path:
    """automl's expected layout (VOC2012/{JPEGImages,Annotations,ImageSets/Main}): symlinks to the records' images
    and VOC XML of their boxes."""
    year = folder / AUTOML_YEAR
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    stems = []
    for index, record in enumerate(records):
        stem = f"{index:06d}"
        stems.append(stem)
        (year / "JPEGImages" / f"{stem}.jpg").symlink_to(record.image_path.absolute())
        width, height = (record.width, record.height) if record.width else Image.open(record.image_path).size
        objects = "".join(
            f"<object><name>{b.label}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
            f"<bndbox><xmin>{b.xmin:g}</xmin><ymin>{b.ymin:g}</ymin><xmax>{b.xmax:g}</xmax><ymax>{b.ymax:g}</ymax>"
            "</bndbox></object>"
            for b in record.boxes
        )
        (year / "Annotations" / f"{stem}.xml").write_text(
            f"<annotation><folder>{AUTOML_YEAR}</folder><filename>{stem}.jpg</filename><size><width>{width}</width>"
            f"<height>{height}</height><depth>3</depth></size>{objects}</annotation>"
        )
    labels = sorted({box.label for record in records for box in record.boxes})
    (folder / "label_map.json").write_text(json.dumps({"background": 0} | {n: i + 1 for i, n in enumerate(labels)}))
    (year / "ImageSets" / "Main" / f"{labels[0]}_train.txt").write_text("".join(f"{s} 1\n" for s in stems))
    return folder


def run_ours(source: Path, output: Path, data_format: str) -> dict[str, Any]:
    """`effdet convert` wall time, then the conversion timed inside a process that has TensorFlow loaded."""
    start = time.perf_counter()
    cli = [str(REPO / ".venv" / "bin" / "effdet"), "convert", str(source), "--output", str(output / "cli")]
    subprocess.run([*cli, "--format", data_format], check=True, capture_output=True)
    wall = time.perf_counter() - start
    timed = subprocess.run(
        [sys.executable, "-c", TIMED, str(source), str(output / "timed"), data_format],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    figures = json.loads(timed.stdout.strip().splitlines()[-1])
    return {
        "images": figures["images"],
        "cli_wall_seconds": round(wall, 2),
        "cli_images_per_sec": round(figures["images"] / wall, 1),
        "convert_seconds": round(figures["seconds"], 2),
        "images_per_sec": round(figures["images"] / figures["seconds"], 1),
        "peak_rss_mb": round(figures["rss_mb"]),
    }


def run_automl(python: Path, repo: Path, devkit: Path, output: Path) -> dict[str, Any]:
    """automl's script on the devkit: wall seconds for every image and, as its start-up, for one."""
    script = repo / "efficientdet" / "dataset" / "create_pascal_tfrecord.py"
    env = {**os.environ, "PYTHONPATH": str(repo / "efficientdet"), "TF_CPP_MIN_LOG_LEVEL": "2"}

    def wall(images: int, name: str) -> tuple[float, float]:
        (output / name).mkdir(parents=True)
        args = [script, f"--data_dir={devkit}", f"--year={AUTOML_YEAR}", "--set=train", "--num_shards=10"]
        args += [f"--output_path={output / name / 'train'}", f"--label_map_json_path={devkit / 'label_map.json'}"]
        start = time.perf_counter()
        run = subprocess.run(
            [str(python), "-c", AUTOML_WRAPPER, *map(str, args), f"--num_images={images}"],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        (rss,) = [line.split()[1] for line in run.stderr.splitlines() if line.startswith("MAXRSS ")]
        return seconds, int(rss) / 1024

    (listing,) = (devkit / AUTOML_YEAR / "ImageSets" / "Main").glob("*_train.txt")
    count = len(listing.read_text().splitlines())
    startup, _ = wall(1, "one")
    total, rss_mb = wall(count, "all")
    return {
        "wall_seconds": round(total, 2),
        "images_per_sec_with_startup": round(count / total, 1),
        "startup_seconds": round(startup, 2),
        "images_per_sec": round((count - 1) / (total - startup), 1) if total - startup > 1 else None,
        "peak_rss_mb": round(rss_mb),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--ccpd-images", type=int, default=500 if QUICK else 50_000)
    parser.add_argument("--unique", type=int, default=100 if QUICK else 5_000)
    parser.add_argument("--scenes", type=Path, help="CCPD-named 480x360 scenes to copy (default: render --unique)")
    parser.add_argument("--automl-python", type=Path, help="python of a venv with tensorflow-cpu 2.15 (skip if unset)")
    parser.add_argument("--automl-repo", type=Path, help="a google/automl checkout")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        scenes = args.scenes or write_dataset(root / "scenes", args.unique, "ccpd", seed=3, image_size=SCENE) / "images"
        ccpd = ccpd_set(root, args.ccpd_images, scenes)
        for name, source, data_format in (("raccoon", RACCOON, "voc"), ("ccpd synthetic", ccpd, "ccpd")):
            out = root / "out" / data_format
            emit("convert_speed", dataset=name, tool="effdet", **run_ours(source, out, data_format))
            if args.automl_python and args.automl_repo:
                records = read_dataset(source, data_format, root / "unused").records
                devkit = voc_devkit(records, root / "devkit" / data_format)
                automl = run_automl(args.automl_python, args.automl_repo, devkit, root / "automl" / data_format)
                emit(
                    "convert_speed",
                    dataset=name,
                    tool="automl create_pascal_tfrecord.py",
                    images=len(records),
                    **automl,
                )
            shutil.rmtree(root / "out", ignore_errors=True)


if __name__ == "__main__":
    main()

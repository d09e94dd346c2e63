"""Validated items written straight into their split's TFRecord shards as validation keeps them, so that each image
file is read once: the split is drawn from the readers' records before validation (effdet.data.split). The first
kept train image is held back to the end: should every image drawn for val be dropped, it takes their place.

Items are numbered (`image/source_id`) in the order they are written and dealt across a split's shards in turn,
each with its class map when it has one; the val ground truth (COCO JSON) is gathered as they go. TensorFlow is
imported when a writer is made, so that the API can read SplitSummary without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from pydantic import BaseModel

from effdet.data.layout import TRAIN_SPLIT, VAL_SPLIT, shard_name
from effdet.data.validate import ValidItem, encoded_image

IMAGES_PER_SHARD = 1000


class SplitSummary(BaseModel):
    """What one split holds."""

    images: int
    boxes: int
    shards: list[str]


def shard_count(images: int, num_shards: int | None) -> int:
    """Shards for a split of `images` (num_shards when given, else one per IMAGES_PER_SHARD), at least one and at
    most one per image."""
    return max(1, min(num_shards or -(-images // IMAGES_PER_SHARD), images or 1))


class SplitWriter:
    """Writes each kept item to its split's shards under `folder` (a context manager that closes the files).

    planned: images per split as drawn before validation; promote_val: whether the first train item goes to val
    when no val item was kept (the split was drawn, not announced by the annotations); `promoted` then names it."""

    def __init__(
        self,
        folder: Path,
        planned: Mapping[str, int],
        label_map: Mapping[int, str],
        num_shards: int | None = None,
        promote_val: bool = False,
    ) -> None:
        import tensorflow as tf

        from effdet.data.shards import make_example

        self._make_example = make_example
        self._label_ids = {name: i for i, name in label_map.items()}
        self._categories = [{"id": i, "name": name} for i, name in sorted(label_map.items())]
        self.shards = {
            split: [shard_name(split, i, count) for i in range(count)]
            for split in (TRAIN_SPLIT, VAL_SPLIT)
            for count in [shard_count(planned.get(split, 0), num_shards)]
        }
        self._writers = {
            split: [tf.io.TFRecordWriter(str(folder / name)) for name in names] for split, names in self.shards.items()
        }
        self.images = dict.fromkeys(self.shards, 0)
        self.boxes = dict.fromkeys(self.shards, 0)
        self.images_with_masks = dict.fromkeys(self.shards, 0)
        self.max_boxes = 0
        self._promote_val = promote_val
        self._held: tuple[ValidItem, bytes] | None = None
        self.promoted: str | None = None
        self._val_images: list[dict[str, object]] = []
        self._val_annotations: list[dict[str, object]] = []

    def add(self, item: ValidItem, image: bytes | None = None) -> str:
        """Write one item (`image`: its file's bytes, when already read) and return its split (the first train item
        may still move to val when the writer closes: see `promoted`)."""
        split = VAL_SPLIT if item.split in (VAL_SPLIT, "test") else TRAIN_SPLIT
        if split == TRAIN_SPLIT and self._promote_val and self._held is None:
            self._held = (item, encoded_image(item, image))
        else:
            self._write(item, encoded_image(item, image), split)
        return split

    def _write(self, item: ValidItem, image: bytes, split: str) -> None:
        source_id = sum(self.images.values()) + 1
        writers = self._writers[split]
        example = self._make_example(item, image, source_id, self._label_ids, item.mask_png)
        writers[self.images[split] % len(writers)].write(example.SerializeToString())
        self.images[split] += 1
        self.images_with_masks[split] += item.mask_png is not None
        self.boxes[split] += len(item.boxes)
        self.max_boxes = max(self.max_boxes, len(item.boxes))
        if split == VAL_SPLIT:
            self._add_ground_truth(source_id, item)

    def _add_ground_truth(self, source_id: int, item: ValidItem) -> None:
        self._val_images.append(
            {"id": source_id, "file_name": item.filename, "width": item.width, "height": item.height}
        )
        for box in item.boxes:
            w, h = box.xmax - box.xmin, box.ymax - box.ymin
            self._val_annotations.append(
                {
                    "id": len(self._val_annotations) + 1,
                    "image_id": source_id,
                    "category_id": self._label_ids[box.label],
                    "bbox": [box.xmin, box.ymin, w, h],
                    "area": w * h,
                    "iscrowd": int(box.is_crowd),
                }
            )

    def ground_truth(self) -> dict[str, object]:
        """COCO-format ground truth of the val split, ids matching the records' image/source_id and class labels."""
        return {"images": self._val_images, "annotations": self._val_annotations, "categories": self._categories}

    def summaries(self) -> dict[str, SplitSummary]:
        """What each split holds."""
        return {
            split: SplitSummary(images=self.images[split], boxes=self.boxes[split], shards=names)
            for split, names in self.shards.items()
        }

    def close(self) -> None:
        """Write the held train item (to val when none was kept), then flush and close every shard."""
        if self._held is not None:
            item, image = self._held
            self._held = None
            if not self.images[VAL_SPLIT]:
                self.promoted = item.filename
            self._write(item, image, VAL_SPLIT if self.promoted else TRAIN_SPLIT)
        for writers in self._writers.values():
            for writer in writers:
                writer.close()

    def __enter__(self) -> SplitWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

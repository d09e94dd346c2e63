"""What a training run's folder holds and what an export adds, named once (no TensorFlow, so the service's
shared package can name these paths too; the records folder is `effdet.data.layout`):

RUN_DIR/config.yaml              the run's one config: training, evaluation and export read it
RUN_DIR/checkpoints/             the last checkpoints (model, optimizer slots, weight averages) for resuming
RUN_DIR/weights/model.*          the averaged weights in automl naming, batch-norm statistics recomputed
RUN_DIR/best/                    the best weights by val AP (with eval_every) and their metrics.json
RUN_DIR/logs/train.jsonl         one progress report per line
RUN_DIR/metrics.json             COCO metrics of the final weights on the val split
OUTPUT/model.tflite              the float32 TFLite model beside an exported SavedModel
OUTPUT/model_<quantization>.tflite  the float16 and int8 TFLite models, when asked for (effdet.formats)
OUTPUT/formats.json              what each exported format is and scored on the val split (effdet.formats)
"""

from __future__ import annotations

CONFIG_FILE = "config.yaml"
CHECKPOINT_DIR = "checkpoints"
WEIGHTS_DIR = "weights"
WEIGHTS_PREFIX = "model"
BEST_DIR = "best"
TRAIN_LOG = "logs/train.jsonl"
METRICS_FILE = "metrics.json"
VAL_DETECTIONS_FILE = "val_detections.json"
TFLITE_FILE = "model.tflite"
TFLITE_FILES = {"tflite": TFLITE_FILE, "tflite_float16": "model_float16.tflite", "tflite_int8": "model_int8.tflite"}
"""The TFLite format names (as a job's export_formats and predict's runtime spell them) and their files."""
FORMATS_FILE = "formats.json"

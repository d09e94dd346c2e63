// COCO and segmentation metrics as tables, shared by the job and model pages.

import { num, table } from "./dom.js";

const OVERALL = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100"];

/** AP, AP50, AP75, AP by box size and AR@100 in one row. */
export function overallTable(metrics, attrs = {}) {
  return table(OVERALL, [OVERALL.map((name) => num(metrics[name]))], "", attrs);
}

/** AP and AP50 of each class. */
export function classTable(metrics, attrs = {}) {
  const rows = Object.entries(metrics.per_class ?? {}).map(([name, m]) => [name, num(m.ap), num(m.ap50)]);
  return table(["class", "AP", "AP50"], rows, "no class evaluated", attrs);
}

/** mIoU and pixel accuracy, then the IoU of each class (none for a class neither labelled nor predicted). */
export function segmentationTables(segmentation, attrs = {}) {
  const overall = table(
    ["mIoU", "pixel accuracy", "images"],
    [[num(segmentation.miou), num(segmentation.pixel_accuracy), num(segmentation.num_images)]],
    "",
    attrs,
  );
  const rows = segmentation.class_names.map((name, i) => [name, num(segmentation.per_class_iou[i])]);
  return [overall, table(["class", "IoU"], rows, "no class evaluated")];
}

/** The tables of every head a model has: COCO box metrics when it detects, IoU when it segments. */
export function metricsTables(metrics, ids = {}) {
  const parts = [];
  if (metrics.ap !== null || Object.keys(metrics.per_class ?? {}).length) {
    parts.push(overallTable(metrics, { id: ids.overall }), classTable(metrics, { id: ids.classes }));
  }
  if (metrics.segmentation) parts.push(...segmentationTables(metrics.segmentation, { id: ids.segmentation }));
  return parts;
}

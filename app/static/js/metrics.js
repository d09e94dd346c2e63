// COCO metrics as tables, shared by the job and model pages.

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

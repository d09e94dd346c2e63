// Charts drawn with the vendored uPlot (loaded as the global `uPlot` by static/vendor/uPlot.iife.min.js).

import { num } from "./dom.js";

const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#ca8a04"];

/** A line chart that grows: `push(x, [y1, y2, ...])` appends one point per series and redraws. The target's
 * data-points attribute counts the points drawn (tests read it). */
export function lineChart(target, { title, xLabel, series, width = 540, height = 240, log = false, range }) {
  const data = [[], ...series.map(() => [])];
  const plot = new uPlot(
    {
      title,
      width,
      height,
      scales: {
        x: { time: false, ...(range ? { range: range.x } : {}) },
        y: log ? { distr: 3 } : range ? { range: range.y } : {},
      },
      axes: [{ label: xLabel }, { size: 60, values: (u, splits) => splits.map((v) => num(v, 2)) }],
      series: [
        { label: xLabel },
        ...series.map((label, i) => ({ label, stroke: COLORS[i % COLORS.length], width: 2, value: (u, v) => num(v) })),
      ],
    },
    data,
    target,
  );
  target.dataset.points = "0";
  return {
    push(x, ys) {
      data[0].push(x);
      ys.forEach((y, i) => data[i + 1].push(y));
      plot.setData(data);
      target.dataset.points = String(data[0].length);
    },
    set(xs, columns) {
      data.splice(0, data.length, xs, ...columns);
      plot.setData(data);
      target.dataset.points = String(xs.length);
    },
  };
}

/** A histogram from `edges` (n + 1 bin edges) and `counts` (n): bars at bin indices, edges on the axis; returns
 * the target. */
export function histogram(target, { title, edges, counts, width = 360, height = 200 }) {
  const bins = counts.map((_, i) => i);
  const range = (i) => `${num(edges[i])} – ${num(edges[i + 1])}`;
  new uPlot(
    {
      title,
      width,
      height,
      scales: { x: { time: false, range: [-0.5, counts.length - 0.5] } },
      axes: [
        {
          splits: () => edges.map((_, i) => i - 0.5),
          values: (u, splits) => splits.map((_, i) => (i % 2 === 0 ? num(edges[i], 2) : "")),
        },
        { size: 45 },
      ],
      series: [
        { label: "bin", value: (u, i) => (i === null ? "–" : range(i)) },
        {
          label: "boxes",
          fill: "#93c5fd",
          stroke: "#2563eb",
          paths: uPlot.paths.bars({ size: [0.9] }),
          points: { show: false },
        },
      ],
    },
    [bins, counts],
    target,
  );
  target.dataset.points = String(counts.length);
  return target;
}

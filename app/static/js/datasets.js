// Datasets: the upload form and list, and one dataset's counts, histograms, problems and anchors.

import * as api from "./api.js";
import { histogram } from "./charts.js";
import { badge, card, facts, h, num, poll, table, when } from "./dom.js";
import { field, submitting } from "./forms.js";
import { galleryCard } from "./gallery.js";

const FORMATS = ["auto", "coco", "voc", "yolo", "csv", "ccpd", "tfrecord"];
const PROBLEMS_SHOWN = 200;
const REFRESH_MS = 2000;
const VAL_FRACTION = { min: 0.01, max: 0.99, step: 0.01, value: 0.1 };

function uploadForm(refresh) {
  const form = h(
    "form",
    { class: "stacked", id: "upload-form" },
    field("Zip of images + annotations", h("input", { name: "file", type: "file", accept: ".zip", required: true })),
    field("Name", h("input", { name: "name", placeholder: "default: the zip's name" })),
    field(
      "Format",
      h(
        "select",
        { name: "format" },
        FORMATS.map((format) => h("option", {}, format)),
      ),
    ),
    field("Val fraction", h("input", { name: "val_fraction", type: "number", ...VAL_FRACTION })),
    h("p", { class: "form-error wide" }),
    h("button", { type: "submit" }, "Upload"),
    h("p", { class: "notice wide", id: "upload-notice" }),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      const dataset = await api.post("v1/datasets", new FormData(form));
      form.reset();
      form.querySelector("#upload-notice").textContent = `"${dataset.name}" uploaded; it is being validated.`;
      await refresh();
    });
  });
  return form;
}

function datasetRow(dataset) {
  return [
    h("a", { href: `#/datasets/${dataset.id}` }, dataset.name),
    badge(dataset.status),
    dataset.format,
    num(dataset.num_images),
    num(dataset.num_boxes),
    Object.values(dataset.label_map ?? {}).join(", ") || "–",
    when(dataset.created_at),
  ];
}

/** #/datasets: upload a zip, and every dataset with its state (refreshed while the page is open). */
export async function datasetsView(main, { signal }) {
  const list = h("div", { id: "dataset-list" });
  const refresh = async () => {
    const page = await api.get("v1/datasets", signal);
    const headers = ["name", "status", "format", "images", "boxes", "classes", "uploaded"];
    list.replaceChildren(table(headers, page.items.map(datasetRow), "no dataset yet: upload one above"));
  };
  main.append(card("Upload a dataset", uploadForm(refresh)), card("Datasets", list));
  await poll(signal, REFRESH_MS, refresh);
}

function classBars(stats) {
  const counts = Object.entries(stats.class_counts);
  const most = Math.max(1, ...counts.map(([, count]) => count));
  return h(
    "div",
    { class: "bars", id: "class-bars" },
    counts.map(([name, count]) => [
      h("span", {}, name),
      h("div", { class: "bar", style: `width: ${(100 * count) / most}%`, title: `${count} boxes` }),
      h("span", {}, `${num(count)} boxes in ${num(stats.images_per_class[name])} images`),
    ]),
  );
}

function histograms(stats) {
  const boxes = stats.boxes;
  if (!boxes) return h("p", { class: "notice" }, "no boxes, so no box statistics");
  const charts = [
    ["box width (pixels)", boxes.width],
    ["box height (pixels)", boxes.height],
    ["box area (pixels², log bins)", boxes.area],
    ["aspect ratio w/h (log bins)", boxes.aspect],
    ["box area / image area (log bins)", stats.relative_boxes?.area],
  ];
  return h(
    "div",
    { class: "grid", id: "histograms" },
    charts
      .filter(([, distribution]) => distribution)
      .map(([title, distribution]) => histogram(h("div", { class: "chart" }), { title, ...distribution.histogram })),
  );
}

function anchorsTable(anchors) {
  if (!anchors) return h("p", { class: "notice" }, "no boxes to suggest anchors from");
  const rows = [
    ["aspect_ratios", anchors.default_aspect_ratios.join(", "), anchors.aspect_ratios.join(", ")],
    ["anchor_scale", num(anchors.default_anchor_scale), num(anchors.anchor_scale)],
    ["mean best IoU", num(anchors.default_mean_iou), num(anchors.suggested_mean_iou)],
    ["boxes matched (IoU ≥ 0.5)", pct(anchors.default_matched_fraction), pct(anchors.suggested_matched_fraction)],
  ];
  const yaml = `aspect_ratios: [${anchors.aspect_ratios.join(", ")}]\nanchor_scale: ${anchors.anchor_scale}`;
  return [
    table(["", "default", "suggested"], rows, "", { id: "anchors" }),
    h(
      "p",
      { class: "notice" },
      `Measured on ${num(anchors.num_boxes)} boxes. To use the suggestion, add to a job's hparams:`,
    ),
    h("pre", { class: "json" }, yaml),
  ];
}

function pct(fraction) {
  return fraction === null || fraction === undefined ? "–" : `${num(100 * fraction)} %`;
}

function problemsList(problems) {
  if (!problems.length) return h("p", { class: "notice", id: "problems" }, "no problem found");
  const rows = problems
    .slice(0, PROBLEMS_SHOWN)
    .map((problem) => [
      h("span", { class: `severity-${problem.severity}` }, problem.severity),
      problem.code,
      problem.file ?? "",
      problem.object_index ?? "",
      problem.message,
    ]);
  const more = problems.length > PROBLEMS_SHOWN ? `${problems.length - PROBLEMS_SHOWN} more not shown` : null;
  return [
    table(["severity", "code", "file", "box", "message"], rows, "", { id: "problems" }),
    more && h("p", { class: "notice" }, more),
  ];
}

function summary(dataset) {
  const splits = Object.entries(dataset.splits ?? {}).map(
    ([name, split]) => `${name}: ${num(split.images)} images, ${num(split.boxes)} boxes`,
  );
  const sizes = dataset.stats?.image_sizes;
  return facts([
    ["format", dataset.format],
    ["images", num(dataset.num_images)],
    ["boxes", num(dataset.num_boxes)],
    ["classes", Object.values(dataset.label_map ?? {}).join(", ") || "–"],
    ["splits", splits.join("; ") || "–"],
    ["median image", sizes?.width ? `${num(sizes.width.median)} × ${num(sizes.height.median)}` : "–"],
    ["max boxes / image", num(dataset.stats?.max_boxes_per_image)],
    ["uploaded", when(dataset.created_at)],
  ]);
}

function validating(dataset) {
  const { done = 0, total = 0 } = dataset.progress ?? {};
  const bar = h("progress", { value: done, max: total || 1 });
  return card("Validating", bar, h("p", { class: "notice" }, `${done} of ${total || "?"} images checked`));
}

function datasetPage(dataset) {
  const train = h("a", { href: `#/jobs?dataset=${dataset.id}` }, "Train a model on it →");
  const title = h(
    "div",
    { class: "title" },
    h("h2", {}, dataset.name),
    badge(dataset.status),
    dataset.status === "ready" ? train : null,
  );
  if (dataset.status === "validating") return [title, validating(dataset)];
  if (dataset.status === "failed") return [title, card(null, h("p", { class: "error-box" }, dataset.error))];
  const stats = dataset.stats;
  return [
    title,
    h(
      "div",
      { class: "grid" },
      card("Summary", summary(dataset)),
      card("Boxes per class", stats ? classBars(stats) : "–"),
    ),
    card("Box sizes and aspect ratios", stats ? histograms(stats) : "no statistics"),
    card("Anchors: default vs suggested", anchorsTable(dataset.anchors)),
    card(`Problems (${dataset.problems.length})`, problemsList(dataset.problems)),
  ];
}

/** #/datasets/{id}: one dataset, refreshed until its validation ends. */
export async function datasetView(main, { params: [id], signal }) {
  await poll(signal, REFRESH_MS, async () => {
    const dataset = await api.get(`v1/datasets/${id}`, signal);
    main.replaceChildren(...datasetPage(dataset));
    if (dataset.status === "ready") main.append(galleryCard(dataset, signal));
    return dataset.status !== "validating";
  });
}

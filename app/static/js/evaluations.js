// Evaluations: the form that evaluates a model on a dataset, one evaluation's result (metrics, per-class counts at
// the threshold, confusion matrix, PR curves) and the comparison of every model evaluated on one dataset.

import * as api from "./api.js";
import { lineChart } from "./charts.js";
import { badge, card, h, num, poll, s, table, when } from "./dom.js";
import { field, submitting } from "./forms.js";
import { overallTable } from "./metrics.js";

const REFRESH_MS = 2000;
const ENDED = ["succeeded", "failed", "cancelled"];

/** The model page's form: dataset, split, format and threshold; on success, the new evaluation's page. */
export async function evaluateForm(model, signal) {
  const datasets = (await api.get("v1/datasets?limit=1000", signal)).items.filter((d) => d.status === "ready");
  const form = h(
    "form",
    { id: "evaluate-form", class: "grid" },
    field(
      "Dataset",
      h(
        "select",
        { name: "dataset_id", required: true },
        datasets.map((d) => h("option", { value: d.id }, `${d.name} (${d.num_images} images)`)),
      ),
    ),
    field(
      "Split",
      h("select", { name: "split" }, ["val", "train", "all"].map((split) => h("option", { value: split }, split))),
    ),
    field(
      "Format",
      h(
        "select",
        { name: "format" },
        h("option", { value: "" }, `model default (${model.default_runtime})`),
        model.formats.map((format) => h("option", { value: format }, format)),
      ),
    ),
    field("Score threshold", h("input", { name: "score_threshold", type: "number", min: 0, max: 1, step: 0.05 })),
    h("p", { class: "form-error" }),
    h("button", { type: "submit" }, "Evaluate"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      const values = Object.fromEntries(new FormData(form));
      const body = { dataset_id: values.dataset_id, split: values.split };
      if (values.format) body.format = values.format;
      if (values.score_threshold !== "") body.score_threshold = Number(values.score_threshold);
      const created = await api.post(`v1/models/${model.id}/evaluations`, body);
      location.hash = `#/evaluations/${created.id}`;
    });
  });
  return form;
}

function evaluationRow(e) {
  const metrics = e.result?.metrics;
  return [
    h("a", { href: `#/evaluations/${e.id}` }, e.id.slice(0, 8)),
    h("a", { href: `#/models/${e.model_id}` }, e.model_name),
    e.format,
    e.split,
    badge(e.status),
    num(metrics?.ap),
    num(metrics?.ap50),
    num(metrics?.ap75),
    e.result ? `${num(e.result.ms_per_image)} ms` : "–",
    when(e.created_at),
  ];
}

const HEADERS = ["evaluation", "model", "format", "split", "status", "AP", "AP50", "AP75", "per image", "created"];

/** A model's evaluations (on its page). */
export function evaluationsTable(items, attrs = {}) {
  return table(HEADERS, items.map(evaluationRow), "no evaluation yet", attrs);
}

/** PR curves at IoU 0.5, one series per (label, curve) pair, drawn into target. */
function prCurves(target, title, curves) {
  const drawn = curves.filter(([, curve]) => curve.length);
  if (!drawn.length) return;
  const chart = lineChart(target, {
    title,
    xLabel: "recall",
    series: drawn.map(([label]) => label),
    range: { x: [0, 1], y: [0, 1] },
    width: 460,
  });
  chart.set(
    drawn[0][1].map(([recall]) => recall),
    drawn.map(([, curve]) => curve.map(([, precision]) => precision)),
  );
}

/** Per class at the threshold: AP, found, false and missed boxes, precision and recall. */
function countsTable(result) {
  const rows = Object.entries(result.confusion.per_class).map(([name, c]) => [
    name,
    num(result.metrics.per_class[name]?.ap),
    c.true_positives,
    c.false_positives,
    c.misses,
    num(c.precision),
    num(c.recall),
  ]);
  const headers = ["class", "AP", "found", "false", "missed", "precision", "recall"];
  return table(headers, rows, "no class", { id: "evaluation-counts" });
}

function confusionTable(confusion) {
  const rows = confusion.labels.map((label, i) => [h("strong", {}, label), ...confusion.matrix[i]]);
  return table(["true ↓ / detected →", ...confusion.labels], rows, "", { id: "confusion-matrix" });
}

/** An image of the dataset (fetched with the key, as the gallery does) with boxes drawn over it in its own pixels:
 * each `{box: [x, y, w, h], label, score?, kind}` in the colour of its kind (truth, detection, flagged). */
async function drawing(datasetId, image, boxes, signal) {
  const picture = s("svg", { class: "drawn", viewBox: `0 0 ${image.width} ${image.height}` });
  const font = Math.max(10, Math.round(image.width / 30));
  const shapes = boxes.map(({ box: [x, y, w, height], label, score, kind }) =>
    s(
      "g",
      { class: kind },
      s("rect", { x, y, width: w, height }),
      s(
        "text",
        { x: x + 3, y: Math.max(font, y - 3), "font-size": font },
        score == null ? label : `${label} ${num(score, 2)}`,
      ),
    ),
  );
  picture.replaceChildren(...shapes);
  if (image.gallery_id) {
    const path = `v1/datasets/${datasetId}/images/${image.gallery_id}/thumbnail?size=512&boxes=false`;
    api
      .send(path, { signal })
      .then((response) => response.blob())
      .then((blob) => {
        const href = URL.createObjectURL(blob);
        picture.prepend(s("image", { href, width: image.width, height: image.height, preserveAspectRatio: "none" }));
      })
      .catch(() => {});
  }
  return picture;
}

/** Images, most errors first: the dataset's boxes in green, the detections at the threshold in blue. */
export async function imagesGrid(datasetId, images, signal, id) {
  const tiles = await Promise.all(
    images.map(async (image) =>
      h(
        "figure",
        { class: "tile" },
        await drawing(
          datasetId,
          image,
          [
            ...image.boxes.map((b) => ({ ...b, kind: "truth" })),
            ...image.detections.map((d) => ({ ...d, kind: "detection" })),
          ],
          signal,
        ),
        h("figcaption", {}, `${image.file_name}: ${image.errors} errors`),
      ),
    ),
  );
  return h("div", { class: "gallery", id }, tiles);
}

async function worstImages(e, signal) {
  const page = await api.get(`v1/evaluations/${e.id}/images?limit=12`, signal);
  return imagesGrid(e.dataset_id, page.items, signal, "evaluation-images");
}

const FIXES = {
  missing_box: (issue) => ({ action: "add_box", label: issue.detection.label, box: issue.detection.box }),
  spurious_box: () => ({ action: "delete_box" }),
  wrong_class: (issue) => ({ action: "change_class", label: issue.detection.label }),
  loose_box: (issue) => ({ action: "replace_box", box: issue.detection.box }),
};
const FIX_WORDS = {
  add_box: "add the detected box",
  delete_box: "delete the box",
  change_class: "change the class",
  replace_box: "take the detected box",
};

/** The likely label errors, most confident first, each drawn with its proposed fix to accept; accepted fixes make
 * a new dataset version (the old one stays). */
async function labelErrors(e, signal) {
  const page = await api.get(`v1/evaluations/${e.id}/label-errors?limit=30`, signal);
  const accepted = new Map();
  const button = h("button", { type: "button", id: "make-version", disabled: true }, "Make a fixed dataset version");
  const message = h("p", { class: "form-error", id: "version-error" });
  const items = await Promise.all(
    page.items.map(async (issue, index) => {
      const fix = {
        image_id: issue.image_id,
        annotation_id: issue.annotation_id ?? undefined,
        ...FIXES[issue.kind](issue),
      };
      const toggle = h("input", { type: "checkbox", class: "accept-fix", "data-kind": issue.kind });
      toggle.addEventListener("change", () => {
        if (toggle.checked) accepted.set(index, fix);
        else accepted.delete(index);
        button.disabled = accepted.size === 0;
        button.textContent = `Make a fixed dataset version (${accepted.size} fixes)`;
      });
      const boxes = [];
      if (issue.box) boxes.push({ box: issue.box, label: issue.label, kind: "flagged" });
      if (issue.detection) boxes.push({ ...issue.detection, kind: "detection" });
      const size = { width: issue.width ?? 0, height: issue.height ?? 0, gallery_id: issue.gallery_id };
      return h(
        "figure",
        { class: "tile finding" },
        size.width ? await drawing(e.dataset_id, size, boxes, signal) : "",
        h(
          "figcaption",
          {},
          h("strong", {}, `${issue.kind.replace("_", " ")} ${num(issue.confidence, 2)}`),
          ` ${issue.file_name}: ${issue.reason}`,
          h("label", {}, toggle, ` accept: ${FIX_WORDS[fix.action]}`),
        ),
      );
    }),
  );
  button.addEventListener("click", async () => {
    button.disabled = true;
    message.textContent = "";
    try {
      const version = await api.post(`v1/datasets/${e.dataset_id}/versions`, { fixes: [...accepted.values()] });
      location.hash = `#/datasets/${version.id}`;
    } catch (error) {
      message.textContent = error.message;
      button.disabled = false;
    }
  });
  const counts = Object.entries(e.result.label_errors ?? {}).map(([kind, n]) => `${n} ${kind.replace("_", " ")}`);
  return [
    h(
      "p",
      { class: "notice" },
      `${page.count} findings; confident (>= 0.5): ${counts.join(", ") || "none"}. Accept the fixes you agree with.`,
    ),
    h("div", { class: "gallery", id: "label-errors" }, items),
    h("div", {}, button, message),
  ];
}

/** #/evaluations/{id}: progress while it runs, then its metrics, counts, confusion matrix and PR curves. */
export async function evaluationView(main, { params: [id], signal }) {
  const title = h("div", { class: "title" });
  const body = h("div", { id: "evaluation-body" });
  main.append(title, body);
  let shown = false;
  await poll(signal, REFRESH_MS, async () => {
    const e = await api.get(`v1/evaluations/${id}`, signal);
    const cancel = h("button", { type: "button", id: "evaluation-cancel" }, "Cancel");
    cancel.addEventListener("click", () => api.post(`v1/evaluations/${id}/cancel`).catch(() => {}));
    title.replaceChildren(
      h("h2", {}, `${e.model_name} (${e.format}) on ${e.split}`),
      h("span", { id: "evaluation-status" }, badge(e.status)),
      h("a", { href: `#/evaluations?dataset_id=${e.dataset_id}` }, "compare on this dataset"),
      ENDED.includes(e.status) ? "" : cancel,
    );
    if (!ENDED.includes(e.status)) {
      const done = e.progress ? `${e.progress.done} of ${e.progress.total} images` : "waiting for a worker";
      body.replaceChildren(h("p", { class: "notice", id: "evaluation-progress" }, done));
      return;
    }
    if (shown) return;
    shown = true;
    if (!e.result) {
      body.replaceChildren(h("p", { class: "error-box" }, e.error ?? e.status));
      return;
    }
    const { metrics, confusion } = e.result;
    const pr = h("div", { class: "chart", id: "evaluation-pr" });
    body.replaceChildren(
      card(
        `COCO metrics on ${metrics.num_images} images`,
        overallTable(metrics, { id: "evaluation-metrics" }),
        h("p", { class: "notice" }, `${num(e.result.ms_per_image)} ms per image through ${e.format}`),
      ),
      card(
        `At score ≥ ${e.score_threshold}, IoU ≥ ${confusion.iou_threshold}`,
        h("div", { class: "grid" }, countsTable(e.result), confusionTable(confusion)),
      ),
      card("Precision / recall", pr),
      card("Images, most errors first (boxes green, detections blue)", await worstImages(e, signal)),
      card("Likely label errors", ...(await labelErrors(e, signal))),
    );
    prCurves(
      pr,
      "per class at IoU 0.5",
      Object.entries(metrics.per_class).map(([name, m]) => [name, m.pr_curve]),
    );
  });
}

/** #/evaluations[?dataset_id=]: every evaluation, or on one dataset the models side by side with their per-class
 * AP and PR curves overlaid. */
export async function evaluationsView(main, { query, signal }) {
  const datasetId = query.get("dataset_id");
  const path = datasetId ? `v1/evaluations?dataset_id=${datasetId}` : "v1/evaluations";
  const page = await api.get(path, signal);
  if (!datasetId) {
    main.append(card("Evaluations", evaluationsTable(page.items, { id: "evaluation-list" })));
    return;
  }
  const done = page.items.filter((e) => e.status === "succeeded");
  const classes = [...new Set(done.flatMap((e) => Object.keys(e.result.metrics.per_class)))];
  const label = (e) => `${e.model_name} ${e.format} ${e.split}`;
  const perClass = classes.map((name) => [name, ...done.map((e) => num(e.result.metrics.per_class[name]?.ap))]);
  const charts = h("div", { class: "grid" });
  main.append(
    card("Models evaluated on this dataset", evaluationsTable(page.items, { id: "evaluation-comparison" })),
    card("AP per class", table(["class", ...done.map(label)], perClass, "nothing finished yet")),
    card("Precision / recall at IoU 0.5", charts),
  );
  for (const name of classes) {
    const target = h("div", { class: "chart" });
    charts.append(target);
    prCurves(
      target,
      name,
      done.map((e) => [label(e), e.result.metrics.per_class[name]?.pr_curve ?? []]),
    );
  }
}

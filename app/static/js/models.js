// Models: the exported versions, one model's metrics and downloads, and a "try it" box that draws detections (and
// a segmentation model's class map).

import * as api from "./api.js";
import { apiKey } from "./auth.js";
import { card, h, num, poll, s, table, when } from "./dom.js";
import { evaluateForm, evaluationsTable, imagesGrid } from "./evaluations.js";
import { metricsTables } from "./metrics.js";

const REFRESH_MS = 5000;

function modelRow(model) {
  return [
    h("a", { href: `#/models/${model.id}` }, `${model.name} v${model.version}`),
    num(model.metrics?.ap),
    num(model.metrics?.ap50),
    Object.values(model.label_map ?? {}).join(", ") || "–",
    model.formats.join(", "),
    h("a", { href: `#/jobs/${model.job_id}` }, model.job_id.slice(0, 8)),
    when(model.created_at),
  ];
}

/** #/models: every exported model (refreshed while the page is open). */
export async function modelsView(main, { signal }) {
  const list = h("div", { id: "model-list" });
  main.append(card("Models", list));
  await poll(signal, REFRESH_MS, async () => {
    const page = await api.get("v1/models", signal);
    const headers = ["model", "AP", "AP50", "classes", "formats", "job", "exported"];
    list.replaceChildren(table(headers, page.items.map(modelRow), "no model yet: a job that succeeds exports one"));
  });
}

const FORMAT_NAMES = {
  saved_model: "SavedModel (zip)",
  tflite: "TFLite float32",
  tflite_float16: "TFLite float16",
  tflite_int8: "TFLite int8",
};

/** A download link that also works with an API key (then the file is fetched with the key first). */
function downloadLink(model, format) {
  const path = `v1/models/${model.id}/download?format=${format}`;
  const suffix = format === "saved_model" ? "zip" : "tflite";
  const filename = `${model.name}-v${model.version}${format.startsWith("tflite_") ? `-${format.slice(7)}` : ""}.${suffix}`;
  const onclick = (event) => {
    if (!apiKey()) return;
    event.preventDefault();
    api.download(path, filename);
  };
  return h(
    "a",
    { href: path, download: filename, onclick, class: "download", "data-format": format },
    FORMAT_NAMES[format] ?? format,
  );
}

/** Each exported format side by side: what quantization cost on val, its speed and size, its download. */
function formatsTable(model) {
  const reference = model.format_scores.saved_model?.ap;
  const rows = model.formats.map((format) => {
    const score = model.format_scores[format] ?? {};
    const cost = score.ap != null && reference != null && format !== "saved_model" ? score.ap - reference : null;
    return [
      format === model.default_runtime ? h("span", {}, format, " ", h("span", { class: "badge" }, "default")) : format,
      num(score.ap),
      cost === null ? "–" : `${cost >= 0 ? "+" : ""}${num(cost, 2)}`,
      num(score.ap50),
      num(score.ap75),
      score.ms_per_image == null ? "–" : `${num(score.ms_per_image)} ms`,
      score.size_bytes == null ? "–" : `${num(score.size_bytes / 1e6)} MB`,
      downloadLink(model, format),
    ];
  });
  const headers = ["format", "AP", "AP vs SavedModel", "AP50", "AP75", "per image", "size", "download"];
  return table(headers, rows, "no format recorded", { id: "model-formats" });
}

async function imageSize(url) {
  const image = new Image();
  image.src = url;
  await image.decode();
  return [image.naturalWidth, image.naturalHeight];
}

const MASK_COLOURS = [
  [230, 25, 75],
  [60, 180, 75],
  [67, 99, 216],
  [245, 130, 49],
  [145, 30, 180],
  [66, 212, 244],
];

/** The run lengths of a COCO compressed RLE string (pycocotools' format: 5 bits per character, a sixth that says
 * more follow, and from the third run on each number a difference to the run two before). */
export function rleCounts(text) {
  const counts = [];
  let position = 0;
  while (position < text.length) {
    let value = 0;
    let shift = 0;
    let more = true;
    while (more) {
      const code = text.charCodeAt(position) - 48;
      value |= (code & 0x1f) << shift;
      more = (code & 0x20) !== 0;
      position += 1;
      shift += 5;
      if (!more && code & 0x10) value |= -1 << shift;
    }
    if (counts.length > 2) value += counts[counts.length - 2];
    counts.push(value);
  }
  return counts;
}

/** A PNG data URL of the classes' pixels (COCO RLE, column by column) in translucent colours, the rest clear. */
function maskOverlay([height, width], masks) {
  const canvas = document.createElement("canvas");
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (const mask of masks) {
    const [r, g, b] = MASK_COLOURS[(mask.class_id - 1) % MASK_COLOURS.length];
    let index = 0;
    rleCounts(mask.counts).forEach((run, i) => {
      if (i % 2) {
        for (let k = index; k < index + run; k += 1) {
          const at = ((k % height) * width + Math.floor(k / height)) * 4;
          pixels.data.set([r, g, b, 140], at);
        }
      }
      index += run;
    });
  }
  context.putImageData(pixels, 0, 0);
  return canvas.toDataURL("image/png");
}

/** The image with a segmentation model's class map (when it answers one) and each detection's box and
 * "label score" drawn over it, in the image's own pixels. */
function drawDetections(picture, url, [width, height], detections, segmented = null) {
  const font = Math.max(12, Math.round(width / 40));
  picture.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const overlay = segmented
    ? [s("image", { href: maskOverlay(segmented.size, segmented.segmentation), width, height, class: "mask" })]
    : [];
  picture.dataset.masks = String(segmented ? segmented.segmentation.length : 0);
  picture.replaceChildren(
    s("image", { href: url, width, height }),
    ...overlay,
    ...detections.map(({ box: [xmin, ymin, xmax, ymax], label, score }) =>
      s(
        "g",
        {},
        s("rect", { class: "box", x: xmin, y: ymin, width: xmax - xmin, height: ymax - ymin }),
        s("text", { x: xmin + 4, y: Math.max(font, ymin - 4), "font-size": font }, `${label} ${score.toFixed(2)}`),
      ),
    ),
  );
  picture.dataset.boxes = String(detections.length);
}

function tryIt(model) {
  const runtime = h(
    "select",
    { id: "tryit-runtime" },
    h("option", { value: "" }, `model default (${model.default_runtime})`),
    model.formats.map((format) => h("option", { value: format }, format)),
  );
  const threshold = h("input", { type: "number", id: "score-threshold", min: 0, max: 1, step: 0.05, value: 0.3 });
  const limit = h("input", { type: "number", id: "max-detections", min: 1, step: 1, value: 20 });
  const fileInput = h("input", { type: "file", accept: "image/*", id: "tryit-file" });
  const drop = h("div", { class: "dropzone", id: "dropzone" }, "Drop an image here, or choose one: ", fileInput);
  const picture = s("svg", { id: "tryit-image", viewBox: "0 0 4 3" });
  const output = h("pre", { class: "json", id: "tryit-json" }, "pick an image to see the detections");
  const message = h("p", { class: "form-error", id: "tryit-error" });
  const hiding = h(
    "select",
    { id: "anonymise-how" },
    h("option", { value: "blur" }, "blurred"),
    h("option", { value: "pixelate" }, "pixelated"),
  );
  const anonymised = h("button", { type: "button", id: "anonymise-download" }, "Download with the detections");
  let chosen = null;

  function request() {
    const form = new FormData();
    form.append("file", chosen.file);
    form.append("score_threshold", threshold.value || "0");
    if (limit.value) form.append("max_detections", limit.value);
    if (runtime.value) form.append("runtime", runtime.value);
    return form;
  }

  async function detect() {
    if (!chosen) return;
    const form = request();
    message.textContent = "";
    output.textContent = "detecting…";
    try {
      const answer = await api.post(`v1/models/${model.id}/predict`, form);
      const segmented = Array.isArray(answer) ? null : answer;
      drawDetections(picture, chosen.url, chosen.size, segmented ? answer.detections : answer, segmented);
      output.textContent = JSON.stringify(answer, null, 2);
    } catch (error) {
      message.textContent = error.message;
      output.textContent = "";
    }
  }

  async function choose(file) {
    if (!file) return;
    if (chosen) URL.revokeObjectURL(chosen.url);
    const url = URL.createObjectURL(file);
    chosen = { file, url, size: await imageSize(url) };
    await detect();
  }

  anonymised.addEventListener("click", async () => {
    if (!chosen) return;
    message.textContent = "";
    try {
      await api.postAndDownload(`v1/models/${model.id}/predict?annotated=${hiding.value}`, request(), chosen.file.name);
    } catch (error) {
      message.textContent = error.message;
    }
  });
  fileInput.addEventListener("change", () => choose(fileInput.files[0]));
  threshold.addEventListener("change", detect);
  limit.addEventListener("change", detect);
  runtime.addEventListener("change", detect);
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    choose(event.dataTransfer.files[0]);
  });
  return [
    h(
      "div",
      { class: "grid" },
      drop,
      h("label", {}, "Score threshold", threshold),
      h("label", {}, "At most this many boxes", limit),
      h("label", {}, "Runtime", runtime),
      h("div", {}, anonymised, " ", hiding),
    ),
    message,
    h("div", { class: "tryit" }, picture, output),
  ];
}

/** A button that evaluates the model on its own training images, where the label-error finder looks by default. */
function findInTrainingSet(model) {
  const button = h("button", { type: "button", id: "find-label-errors" }, "Find label errors in its training images");
  const message = h("p", { class: "form-error" });
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const created = await api.post(`v1/models/${model.id}/evaluations`, { split: "train" });
      location.hash = `#/evaluations/${created.id}`;
    } catch (error) {
      message.textContent = error.message;
      button.disabled = false;
    }
  });
  return h("div", {}, button, message);
}

/** The job's val images with what the model found on them, worst first (or why there are none). */
async function valImages(model, signal) {
  try {
    const [job, page] = await Promise.all([
      api.get(`v1/jobs/${model.job_id}`, signal),
      api.get(`v1/models/${model.id}/val-images?limit=12`, signal),
    ]);
    return imagesGrid(job.dataset_id, page.items, signal, "model-val-images");
  } catch (error) {
    return h("p", { class: "notice" }, error.message);
  }
}

/** #/models/{id}: metrics, formats with their downloads, and the try-it box. */
export async function modelView(main, { params: [id], signal }) {
  const model = await api.get(`v1/models/${id}`, signal);
  const metrics = model.metrics
    ? metricsTables(model.metrics, { overall: "model-metrics", segmentation: "model-segmentation" })
    : h("p", { class: "notice" }, "not evaluated (the dataset had no val split)");
  const title = `${model.name} v${model.version}`;
  main.append(
    h("div", { class: "title" }, h("h2", {}, title), h("a", { href: `#/jobs/${model.job_id}` }, "training job")),
    card("Metrics on the val split", metrics),
    card(
      "Formats and downloads",
      formatsTable(model),
      h("p", { class: "notice" }, `exported ${when(model.created_at)}; each format scored on val through its own runtime`),
    ),
    card("Try it", ...tryIt(model)),
  );
  main.append(card("Val images, most errors first (boxes green, detections blue)", await valImages(model, signal)));
  const evaluations = await api.get(`v1/evaluations?model_id=${model.id}`, signal);
  main.append(
    card(
      "Evaluate on a dataset",
      h("p", { class: "notice" }, "COCO metrics, per-class counts at a threshold and a confusion matrix"),
      await evaluateForm(model, signal),
      findInTrainingSet(model),
      evaluationsTable(evaluations.items, { id: "model-evaluations" }),
    ),
  );
}

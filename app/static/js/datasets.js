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
const ALIASES_EXAMPLE = '{"lp": "licence plate"}: merges spellings of one class';
const LABEL_MAP_EXAMPLE = '{"1": "licence plate"}: fixes the class ids';
const SIMILAR = "similar_class_names";

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
    field("Class aliases (JSON, optional)", h("input", { name: "class_aliases", placeholder: ALIASES_EXAMPLE })),
    field("Label map (JSON, optional)", h("input", { name: "label_map", placeholder: LABEL_MAP_EXAMPLE })),
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
  const yaml =
    `aspect_ratios: [${anchors.aspect_ratios.join(", ")}]\nanchor_scale: ${anchors.anchor_scale}\n` +
    "# or let the job choose them on its training boxes: aspect_ratios: auto, anchor_scale: auto";
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

const ANCHORS_MODEL = "efficientdet-d0";

/** The anchor suggestion and the box sizes for a chosen variant (each at its own input size and levels). */
function anchorsCard(dataset) {
  const byModel = dataset.anchors_by_model ?? {};
  const names = Object.keys(byModel);
  if (!names.length) return card("Anchors: default vs suggested", anchorsTable(dataset.anchors));
  const sizes = dataset.stats?.input_sizes?.by_model ?? {};
  const target = h("div", { id: "anchors-for-model" });
  const show = (name) => target.replaceChildren(...anchorsTable(byModel[name]), ...boxSizes(sizes[name]));
  const initial = names.includes(ANCHORS_MODEL) ? ANCHORS_MODEL : names[0];
  const chooser = h(
    "select",
    { id: "anchors-model", onchange: (event) => show(event.target.value) },
    names.map((name) => h("option", { value: name, selected: name === initial }, name)),
  );
  show(initial);
  return card("Anchors and box sizes for a model", h("label", {}, "Model ", chooser), target);
}

/** Boxes by shorter side after the resize to the variant's input size; a notice when over a tenth are small. */
function boxSizes(counts) {
  if (!counts) return [];
  const total = counts.under_16 + counts.from_16_to_32 + counts.over_32;
  const share = (n) => (total ? pct(n / total) : "–");
  const shares = [counts.under_16, counts.from_16_to_32, counts.over_32].map(share);
  const rows = [[`${counts.image_size} px`, ...shares]];
  const small = counts.under_16 * 10 > total;
  return [
    table(["input size", "under 16 px", "16-32 px", "over 32 px"], rows, "", { id: "box-sizes" }),
    h(
      "p",
      { class: small ? "warning-box" : "notice" },
      small
        ? "More than a tenth of the boxes are under 16 px on their shorter side at this input size: a job " +
            "warns and suggests a larger image_size (or tiling)."
        : "Box shorter sides after the image is resized to the model's input (aspect kept).",
    ),
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
    ["class aliases", aliasText(dataset.class_aliases) || "–"],
    ["splits", splits.join("; ") || "–"],
    ["median image", sizes?.width ? `${num(sizes.width.median)} × ${num(sizes.height.median)}` : "–"],
    ["max boxes / image", num(dataset.stats?.max_boxes_per_image)],
    ["masks", masksText(dataset.segmentation)],
    ["uploaded", when(dataset.created_at)],
  ]);
}

/** Images with a class map per split and each class's share of the pixels (a segmentation head trains on them). */
function masksText(segmentation) {
  if (!segmentation) return "none (boxes only)";
  const images = Object.entries(segmentation.images).map(([split, count]) => `${split}: ${num(count)} images`);
  const shares = Object.entries(segmentation.class_shares).map(([name, share]) => `${name} ${pct(share)}`);
  return `${images.join("; ")} · pixels: ${shares.join(", ")}, ignored ${pct(segmentation.ignore_share)}`;
}

function aliasText(aliases) {
  return Object.entries(aliases ?? {})
    .map(([alias, name]) => `${alias} → ${name}`)
    .join(", ");
}

/** The dataset's aliases with the suggested ones added; an old alias pointing at a name now merged follows it
 * to the final name (the API refuses chains). */
export function mergedAliases(current, suggested) {
  const merged = { ...(current ?? {}), ...suggested };
  for (const [alias, name] of Object.entries(merged)) merged[alias] = suggested[name] ?? name;
  return merged;
}

/** The similar_class_names warnings, each with its merge, and one button that re-labels with all of them. */
function similarClasses(dataset, relabel) {
  const similar = dataset.problems.filter((problem) => problem.code === SIMILAR && problem.class_aliases);
  if (!similar.length) return null;
  const suggested = Object.assign({}, ...similar.map((problem) => problem.class_aliases));
  const error = h("p", { class: "form-error" });
  const button = h("button", { type: "button", id: "merge-classes" }, `Merge: ${aliasText(suggested)}`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    error.textContent = "";
    try {
      await relabel({ class_aliases: mergedAliases(dataset.class_aliases, suggested) });
    } catch (failure) {
      error.textContent = failure.message;
      button.disabled = false;
    }
  });
  return card(
    "Classes that look like one class",
    h(
      "ul",
      { id: "similar-classes" },
      similar.map((problem) => h("li", {}, problem.message)),
    ),
    h("p", { class: "notice" }, "Merging converts the dataset again from its upload; jobs already run keep theirs."),
    button,
    error,
  );
}

/** The dataset's class_aliases and label map as JSON inputs; sending them converts it again (PATCH). */
function relabelForm(dataset, relabel) {
  const current = { class_aliases: dataset.class_aliases, label_map: dataset.requested_label_map };
  const input = (name, placeholder) =>
    h("input", { name, placeholder, value: current[name] ? JSON.stringify(current[name]) : "" });
  const form = h(
    "form",
    { class: "stacked", id: "relabel-form" },
    field("Class aliases (JSON)", input("class_aliases", ALIASES_EXAMPLE)),
    field("Label map (JSON)", input("label_map", LABEL_MAP_EXAMPLE)),
    h("p", { class: "form-error wide" }),
    h("button", { type: "submit" }, "Convert again with these classes"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      const changes = {};
      for (const name of Object.keys(current)) {
        const text = form.elements[name].value.trim();
        try {
          changes[name] = text ? JSON.parse(text) : null;
        } catch (error) {
          throw new api.ApiError(422, [{ loc: ["body", name], msg: `not valid JSON (${error.message})` }]);
        }
      }
      await relabel(changes);
    });
  });
  return card("Re-label", form);
}

function validating(dataset) {
  const { done = 0, total = 0 } = dataset.progress ?? {};
  const bar = h("progress", { value: done, max: total || 1 });
  return card("Validating", bar, h("p", { class: "notice" }, `${done} of ${total || "?"} images checked`));
}

function datasetPage(dataset, relabel) {
  const train = h("a", { href: `#/jobs?dataset=${dataset.id}` }, "Train a model on it →");
  const title = h(
    "div",
    { class: "title" },
    h("h2", {}, dataset.name),
    badge(dataset.status),
    dataset.status === "ready" ? train : null,
  );
  if (dataset.status === "validating") return [title, validating(dataset)];
  if (dataset.status === "failed")
    return [title, card(null, h("p", { class: "error-box" }, dataset.error)), relabelForm(dataset, relabel)];
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
    similarClasses(dataset, relabel),
    anchorsCard(dataset),
    card(`Problems (${dataset.problems.length})`, problemsList(dataset.problems)),
    relabelForm(dataset, relabel),
  ];
}

/** #/datasets/{id}: one dataset, refreshed until its validation ends (and again after a re-label). */
export async function datasetView(main, { params: [id], signal }) {
  const relabel = async (changes) => {
    await api.patch(`v1/datasets/${id}`, changes);
    await follow();
  };
  const follow = () =>
    poll(signal, REFRESH_MS, async () => {
      const dataset = await api.get(`v1/datasets/${id}`, signal);
      main.replaceChildren(...datasetPage(dataset, relabel).filter(Boolean));
      if (dataset.status === "ready") main.append(galleryCard(dataset, signal));
      return dataset.status !== "validating";
    });
  await follow();
}

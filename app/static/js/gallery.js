// A dataset's images: thumbnails in a grid (those with problems first, boxes drawn by the API: dropped ones in red),
// filters by split, class and problem code, pages, and one image opened large with its boxes and problems.
// Thumbnails are fetched with the API key and shown through blob URLs, since an <img src> cannot send the header.

import * as api from "./api.js";
import { badge, card, h, num, table } from "./dom.js";

const PAGE = 48;
const THUMBNAIL = 256;
const LARGE = 1024;
const SPLITS = ["train", "val", "dropped"];

/** Fetch a thumbnail into a blob URL, remembered in `urls` so the page can revoke them when it redraws. */
async function blobUrl(path, urls, signal) {
  const blob = await (await api.send(path, { signal })).blob();
  const url = URL.createObjectURL(blob);
  urls.push(url);
  return url;
}

function picture(path, urls, signal, alt) {
  const holder = h("div", { class: "thumb-holder" }, h("span", { class: "notice" }, "loading…"));
  blobUrl(path, urls, signal)
    .then((url) => holder.replaceChildren(h("img", { src: url, alt })))
    .catch((error) => {
      if (!signal.aborted) holder.replaceChildren(h("span", { class: "notice" }, error.message));
    });
  return holder;
}

function select(name, label, values) {
  return h(
    "label",
    {},
    label,
    h(
      "select",
      { name },
      h("option", { value: "" }, "all"),
      values.map((value) => h("option", {}, value)),
    ),
  );
}

function codes(image) {
  return [...new Set(image.problems.map((problem) => problem.code))];
}

function imageDialog() {
  let dialog = document.getElementById("image-dialog");
  if (!dialog) {
    dialog = h("dialog", { id: "image-dialog", class: "image-dialog" });
    dialog.addEventListener("close", () => dialog.replaceChildren());
    document.body.append(dialog);
  }
  return dialog;
}

function boxRows(image) {
  return image.boxes.map((box, index) => [
    String(index),
    box.label,
    box.bbox ? box.bbox.map((value) => num(value, 4)).join(", ") : "not numbers",
    box.dropped ? h("span", { class: "severity-error" }, "dropped") : "kept",
    box.problem ?? "",
  ]);
}

function problemRows(image) {
  return image.problems.map((problem) => [
    h("span", { class: `severity-${problem.severity}` }, problem.severity),
    problem.code,
    problem.object_index ?? "",
    problem.message,
  ]);
}

/** Open one image large (drawn by the API at LARGE pixels) with its boxes and problems listed. */
function openImage(datasetId, image, urls, signal) {
  const dialog = imageDialog();
  const path = `v1/datasets/${datasetId}/images/${image.id}/thumbnail?size=${LARGE}`;
  const size = image.width ? `${image.width} × ${image.height}` : "size unknown";
  dialog.replaceChildren(
    h(
      "div",
      { class: "title" },
      h("h2", {}, image.path),
      badge(image.split),
      h("button", { type: "button", onclick: () => dialog.close() }, "Close"),
    ),
    h("p", { class: "notice" }, `${size}; boxes kept in green, kept with a warning in orange, dropped in red`),
    image.has_file ? picture(path, urls, signal, image.path) : h("p", { class: "notice" }, "no file to show"),
    h("h3", {}, `Boxes (${image.boxes.length})`),
    table(["#", "class", "xmin, ymin, xmax, ymax", "", "problem"], boxRows(image), "no box", { id: "image-boxes" }),
    h("h3", {}, `Problems (${image.problems.length})`),
    table(["severity", "code", "box", "message"], problemRows(image), "no problem", { id: "image-problems" }),
  );
  dialog.showModal();
}

function tile(datasetId, image, urls, signal) {
  const path = `v1/datasets/${datasetId}/images/${image.id}/thumbnail?size=${THUMBNAIL}`;
  const found = codes(image);
  return h(
    "figure",
    {
      class: found.length ? "tile has-problems" : "tile",
      "data-image-id": image.id,
      tabindex: 0,
      title: "open large",
      onclick: () => openImage(datasetId, image, urls, signal),
      onkeydown: (event) => event.key === "Enter" && openImage(datasetId, image, urls, signal),
    },
    image.has_file ? picture(path, urls, signal, image.path) : h("div", { class: "thumb-holder notice" }, "no file"),
    h(
      "figcaption",
      {},
      h("span", { class: "tile-path" }, image.path),
      badge(image.split),
      found.length ? h("span", { class: "severity-error" }, found.join(", ")) : null,
    ),
  );
}

/** The gallery card of a ready dataset: filters, a page of thumbnails and the pager. */
export function galleryCard(dataset, signal) {
  const problemCodes = [...new Set((dataset.problems ?? []).map((problem) => problem.code))].sort();
  const filters = h(
    "form",
    { class: "gallery-filters", id: "gallery-filters" },
    select("split", "Split", SPLITS),
    select("class", "Class", Object.values(dataset.label_map ?? {})),
    select("problem", "Problem", problemCodes),
  );
  const grid = h("div", { class: "gallery", id: "gallery" });
  const pager = h("div", { class: "pager", id: "gallery-pager" });
  const state = { offset: 0 };
  let urls = [];

  const load = async () => {
    urls.forEach((url) => URL.revokeObjectURL(url));
    urls = [];
    const query = new URLSearchParams({ limit: PAGE, offset: state.offset });
    for (const [name, value] of new FormData(filters)) if (value) query.set(name, value);
    let page;
    try {
      page = await api.get(`v1/datasets/${dataset.id}/images?${query}`, signal);
    } catch (error) {
      if (!signal.aborted) grid.replaceChildren(h("p", { class: "notice" }, error.message));
      pager.replaceChildren();
      return;
    }
    grid.replaceChildren(
      ...(page.items.length
        ? page.items.map((image) => tile(dataset.id, image, urls, signal))
        : [h("p", { class: "notice" }, "no image matches these filters")]),
    );
    const last = Math.min(state.offset + page.items.length, page.count);
    const move = (offset) => () => {
      state.offset = offset;
      load();
    };
    pager.replaceChildren(
      h("button", { type: "button", disabled: state.offset === 0, onclick: move(Math.max(0, state.offset - PAGE)) }, "←"),
      h("span", {}, page.count ? `${num(state.offset + 1)}–${num(last)} of ${num(page.count)}` : "0 images"),
      h("button", { type: "button", disabled: last >= page.count, onclick: move(state.offset + PAGE) }, "→"),
    );
  };
  filters.addEventListener("change", () => {
    state.offset = 0;
    load();
  });
  signal.addEventListener("abort", () => urls.forEach((url) => URL.revokeObjectURL(url)));
  load();
  return card("Images (problems first; boxes dropped by validation in red)", filters, grid, pager);
}

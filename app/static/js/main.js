// The dashboard's entry point: a hash router that shows one page at a time; leaving a page aborts its polls and
// event streams.

import { datasetsView, datasetView } from "./datasets.js";
import { h } from "./dom.js";
import { evaluationsView, evaluationView } from "./evaluations.js";
import { jobsView, jobView } from "./jobs.js";
import { modelsView, modelView } from "./models.js";

const ROUTES = [
  [/^#\/datasets\/(\w+)$/, datasetView],
  [/^#\/datasets$/, datasetsView],
  [/^#\/jobs\/(\w+)$/, jobView],
  [/^#\/jobs$/, jobsView],
  [/^#\/models\/(\w+)$/, modelView],
  [/^#\/models$/, modelsView],
  [/^#\/evaluations\/(\w+)$/, evaluationView],
  [/^#\/evaluations$/, evaluationsView],
];

let leaving = null;

async function show() {
  leaving?.abort();
  const controller = (leaving = new AbortController());
  const [path, search = ""] = (location.hash || "#/datasets").split("?");
  const [pattern, view] = ROUTES.find(([route]) => route.test(path)) ?? ROUTES[1];
  const main = document.getElementById("view");
  main.replaceChildren();
  const section = path.split("/")[1] ?? "datasets";
  document
    .querySelectorAll("nav a[data-section]")
    .forEach((link) => link.classList.toggle("active", link.dataset.section === section));
  try {
    await view(main, {
      params: path.match(pattern)?.slice(1) ?? [],
      query: new URLSearchParams(search),
      signal: controller.signal,
    });
  } catch (error) {
    if (!controller.signal.aborted) main.append(h("p", { class: "error-box", id: "page-error" }, error.message));
  }
}

window.addEventListener("hashchange", show);
show();

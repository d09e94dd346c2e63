// Jobs: the submission form and list, and one job's live progress, curves, metrics and log.

import * as api from "./api.js";
import { lineChart } from "./charts.js";
import { badge, card, duration, h, num, poll, table, when } from "./dom.js";
import { field, submitting } from "./forms.js";
import { classTable, overallTable, segmentationTables } from "./metrics.js";

const FINISHED = ["succeeded", "failed", "cancelled"];
const REFRESH_MS = 2000;
const NUMBER_FIELDS = ["num_steps", "num_epochs", "batch_size", "max_train_seconds", "eval_every", "seed"];
const TEXT_FIELDS = ["dataset_id", "model", "pretrained", "var_freeze_expr", "hparams_yaml"];
const YAML_EXAMPLE = "image_size: 512\nlearning_rate: 0.008\naspect_ratios: auto\ntiles: 640";

function select(name, choices, selected) {
  return h(
    "select",
    { name },
    choices.map(([value, label]) => h("option", { value, selected: value === selected }, label)),
  );
}

function input(name, attrs) {
  return h("input", { name, ...attrs });
}

/** The job a form describes: empty fields left out, so the API's defaults apply. */
function jobBody(form) {
  const body = {};
  for (const name of TEXT_FIELDS) if (form.elements[name].value.trim()) body[name] = form.elements[name].value;
  for (const name of NUMBER_FIELDS) {
    if (form.elements[name].value !== "") body[name] = Number(form.elements[name].value);
  }
  return body;
}

async function jobForm(signal, datasetId) {
  const [datasets, checkpoints, dashboard] = await Promise.all([
    api.get("v1/datasets?limit=1000", signal),
    api.get("v1/checkpoints", signal),
    api.get("dashboard/options", signal),
  ]);
  const ready = datasets.items.filter((dataset) => dataset.status === "ready");
  const datasetChoices = ready.map((d) => [d.id, `${d.name} (${d.num_images} images)`]);
  const modelChoices = dashboard.models.map((name) => [name, name]);
  const usable = checkpoints.items.filter((checkpoint) => checkpoint.usable);
  const checkpointChoices = [["", "none (from scratch)"], ...usable.map((c) => [c.name, `${c.name} (${c.variants.join(", ")})`])];
  const yaml = h("textarea", { name: "hparams_yaml", placeholder: YAML_EXAMPLE, spellcheck: false });
  const form = h(
    "form",
    { class: "stacked", id: "job-form" },
    field("Dataset", select("dataset_id", datasetChoices, datasetId)),
    field("Model", select("model", modelChoices, "efficientdet-d0")),
    field("Steps", input("num_steps", { type: "number", min: 1, placeholder: "or give epochs" })),
    field("Epochs", input("num_epochs", { type: "number", min: 0, step: "any", placeholder: "or give steps" })),
    field("Batch size", input("batch_size", { type: "number", min: 1, value: 8 })),
    field("Time budget (seconds)", input("max_train_seconds", { type: "number", min: 1, placeholder: "none" })),
    field(
      "Evaluate every (steps; keeps the best by val AP)",
      input("eval_every", { type: "number", min: 1, placeholder: "none: the last weights" }),
    ),
    field("Seed", input("seed", { type: "number", min: 0, placeholder: "0" })),
    field("Pretrained checkpoint", select("pretrained", checkpointChoices, "")),
    field("Freeze regex (var_freeze_expr)", input("var_freeze_expr", { placeholder: "(efficientnet|fpn_cells)" })),
    field("Hyperparameters (google/automl YAML)", yaml, true),
    h("p", { class: "form-error wide" }),
    h("button", { type: "submit" }, "Start training"),
  );
  if (!ready.length)
    form.querySelector("[data-error-for=dataset_id]").textContent = "no dataset is ready: upload one first";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submitting(form, async () => {
      const job = await api.post("v1/jobs", jobBody(form));
      location.hash = `#/jobs/${job.id}`;
    });
  });
  return form;
}

function progressText(progress) {
  if (!progress?.total_steps) return "–";
  return `${num(progress.step)} / ${num(progress.total_steps)}`;
}

function jobRow(job) {
  return [
    h("a", { href: `#/jobs/${job.id}` }, job.id.slice(0, 8)),
    job.model,
    badge(job.status),
    progressText(job.progress),
    num(job.progress?.loss),
    num(job.metrics?.ap),
    job.model_id ? h("a", { href: `#/models/${job.model_id}` }, "model") : "–",
    when(job.created_at),
  ];
}

/** #/jobs: start a job, and every job with its state and progress (refreshed while the page is open). */
export async function jobsView(main, { signal, query }) {
  const list = h("div", { id: "job-list" });
  main.append(card("Start a fine-tuning job", await jobForm(signal, query.get("dataset"))), card("Jobs", list));
  await poll(signal, REFRESH_MS, async () => {
    const page = await api.get("v1/jobs", signal);
    const headers = ["job", "model", "status", "step", "loss", "AP", "model", "submitted"];
    list.replaceChildren(table(headers, page.items.map(jobRow), "no job yet"));
  });
}

/** The advice the service found when it resolved the job (e.g. objects too small for the input size). */
function warningsList(warnings) {
  if (!warnings?.length) return [];
  const lines = warnings.map((warning) => h("p", {}, `warning: ${warning}`));
  return [h("div", { class: "warning-box", id: "job-warnings" }, lines)];
}

/** The live part of a job page: progress bar, figures, curves, log and metrics, updated from events. */
class JobMonitor {
  constructor(job) {
    this.job = job;
    this.status = h("span", {}, badge(job.status));
    this.bar = h("progress", { id: "job-progress", value: 0, max: 1 });
    this.figures = h("div", { class: "progress-line", id: "job-figures" });
    this.lossTarget = h("div", { class: "chart", id: "loss-chart" });
    this.rateTarget = h("div", { class: "chart", id: "lr-chart" });
    this.log = h("ol", { class: "log", id: "job-log" });
    this.metrics = h("div", { id: "job-metrics" }, h("p", { class: "notice" }, "after evaluation"));
    this.result = h("div", { id: "job-result" });
  }

  sections(onCancel) {
    const cancel = h(
      "span",
      { class: "actions" },
      h(
        "button",
        {
          type: "button",
          id: "finish-job",
          title: "end training now, then evaluate and export the weights so far",
          onclick: () => onCancel(true),
        },
        "Finish now, keep model",
      ),
      h("button", { type: "button", class: "danger", id: "cancel-job", onclick: () => onCancel(false) }, "Cancel job"),
    );
    this.cancel = cancel;
    const job = this.job;
    const settings = h("pre", { class: "json" }, JSON.stringify({ options: job.options, config: job.config }, null, 2));
    return [
      h("div", { class: "title" }, h("h2", {}, `Job ${job.id.slice(0, 8)} · ${job.model}`), this.status, cancel),
      ...warningsList(job.warnings),
      card("Progress", this.bar, this.figures, this.result),
      card("Training curves", h("div", { class: "pair" }, this.lossTarget, this.rateTarget)),
      card("Metrics on the val split", this.metrics),
      card("Events", this.log),
      card("Settings", h("details", {}, h("summary", {}, "resolved hyperparameters and run options"), settings)),
    ];
  }

  drawCharts() {
    const size = { width: this.lossTarget.clientWidth, height: 240 };
    this.loss = lineChart(this.lossTarget, {
      title: "loss",
      xLabel: "step",
      series: ["loss", "class", "box", "segmentation"],
      ...size,
    });
    this.rate = lineChart(this.rateTarget, {
      title: "learning rate",
      xLabel: "step",
      series: ["learning rate"],
      ...size,
    });
  }

  onEvent(kind, data, at) {
    if (kind === "progress") this.progress(data);
    else if (kind === "state") this.state(data, at);
    else if (kind === "log") this.line(at, data.message);
    else if (kind === "metrics") this.showMetrics(data);
  }

  progress(data) {
    this.bar.max = data.total_steps;
    this.bar.value = data.step;
    this.loss.push(data.step, [data.loss, data.cls_loss, data.box_loss, data.seg_loss ?? null]);
    this.rate.push(data.step, [data.learning_rate]);
    this.figures.replaceChildren(
      h("span", {}, `step ${progressText(data)}`),
      h("span", {}, `loss ${num(data.loss)}`),
      h("span", {}, `learning rate ${num(data.learning_rate)}`),
      h("span", {}, `${num(data.images_per_sec)} images/s`),
      h("span", {}, `ETA ${duration(data.eta_seconds)}`),
    );
  }

  state(data, at) {
    this.status.replaceChildren(badge(data.status));
    this.cancel.hidden = FINISHED.includes(data.status);
    this.line(at, `→ ${data.status}${data.error ? `: ${data.error}` : ""}`);
  }

  line(at, message) {
    this.log.append(h("li", {}, `${new Date(at).toLocaleTimeString()}  ${message}`));
    this.log.scrollTop = this.log.scrollHeight;
  }

  showMetrics(metrics) {
    this.hasMetrics = true;
    const classes = Object.entries(metrics.per_class ?? {});
    const prTarget = h("div", { class: "chart", id: "pr-chart" });
    const boxes = classes.length
      ? [
          overallTable(metrics, { id: "overall-metrics" }),
          h("p", { class: "notice" }, `COCO box metrics on ${num(metrics.num_images)} val images; per class:`),
          h("div", { class: "grid" }, classTable(metrics, { id: "class-metrics" }), prTarget),
        ]
      : [];
    const masks = metrics.segmentation
      ? [
          h("p", { class: "notice" }, "segmentation on the val images at their own size; IoU per class:"),
          h("div", { class: "grid" }, ...segmentationTables(metrics.segmentation, { id: "segmentation-metrics" })),
        ]
      : [];
    this.metrics.replaceChildren(...boxes, ...masks);
    const curves = classes.filter(([, m]) => m.pr_curve.length);
    if (!curves.length) return;
    const chart = lineChart(prTarget, {
      title: "precision / recall at IoU 0.5",
      xLabel: "recall",
      series: curves.map(([name]) => name),
      range: { x: [0, 1], y: [0, 1] },
      width: 420,
    });
    chart.set(
      curves[0][1].pr_curve.map(([recall]) => recall),
      curves.map(([, m]) => m.pr_curve.map(([, precision]) => precision)),
    );
  }

  finish(job) {
    this.status.replaceChildren(badge(job.status));
    this.cancel.hidden = FINISHED.includes(job.status);
    if (job.metrics && !this.hasMetrics) this.showMetrics(job.metrics);
    const parts = [];
    if (job.error) parts.push(h("p", { class: "error-box" }, job.error));
    if (job.model_id)
      parts.push(
        h("p", {}, h("a", { href: `#/models/${job.model_id}`, id: "model-link" }, "Open the exported model →")),
      );
    this.result.replaceChildren(...parts);
  }
}

/** #/jobs/{id}: follows the job's event stream (progress, curves, state, metrics) until it ends. */
export async function jobView(main, { params: [id], signal }) {
  const job = await api.get(`v1/jobs/${id}`, signal);
  const monitor = new JobMonitor(job);
  const cancel = async (keepModel) => {
    try {
      await api.post(`v1/jobs/${id}/cancel${keepModel ? "?keep_model=true" : ""}`);
      monitor.line(Date.now(), keepModel ? "asked to finish now and keep the model" : "cancellation requested");
    } catch (error) {
      monitor.line(Date.now(), `cancel failed: ${error.message}`);
    }
  };
  main.append(...monitor.sections(cancel));
  monitor.drawCharts();
  monitor.cancel.hidden = FINISHED.includes(job.status);
  await api.follow(
    `v1/jobs/${id}/events`,
    (kind, event) => monitor.onEvent(kind, event.data, event.created_at),
    signal,
  );
  if (!signal.aborted) monitor.finish(await api.get(`v1/jobs/${id}`, signal));
}

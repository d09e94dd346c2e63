"""How the command line shows things: rich tables and progress bars for people (progress on stderr), plain JSON on
stdout for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)
from rich.table import Column, Table

from effdet_client.archive import ProgressCallback
from effdet_client.errors import ApiError, ClientError
from effdet_client.models import (
    Dataset,
    DatasetImageList,
    DatasetList,
    DeliveryList,
    Detection,
    Evaluation,
    EvaluationList,
    Job,
    JobEvent,
    JobList,
    LabelIssueList,
    Model,
    ModelList,
    Webhook,
    WebhookList,
)

console = Console(highlight=False, soft_wrap=True)
status_console = Console(stderr=True, highlight=False, soft_wrap=True)
"""Progress bars and errors: stderr, so that stdout stays parseable."""

ID_COLUMNS = frozenset({"id", "model id", "job"})
"""Columns of 32-character ids: never shortened (people copy them into the next command)."""
Shown = TypeVar("Shown", bound=BaseModel)
STATUS_STYLE = {"ready": "green", "succeeded": "green", "failed": "red", "cancelled": "yellow"}


def emit_json(value: BaseModel | list[Any] | dict[str, Any]) -> None:
    """One JSON document on stdout (pydantic models as the API sent them)."""
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    typer.echo(json.dumps(data, default=str))


def show(value: Shown, as_json: bool, render: Callable[[Shown], None]) -> None:
    """The answer as JSON on stdout for scripts, else as render draws it for people."""
    if as_json:
        emit_json(value)
    else:
        render(value)


def fail(err: ClientError) -> None:
    """Print what went wrong (each problem of a 422 on its own line) to stderr."""
    if isinstance(err, ApiError):
        status_console.print(f"[red]error[/red] {err.status_code} ({err.method} {err.path}):", markup=True)
        for problem in err.problems:
            status_console.print(f"  {problem}", markup=False)
    else:
        status_console.print(f"[red]error[/red]: {err}", markup=True)


def _table(*headers: str, title: str | None = None) -> Table:
    """A table whose id columns keep their full width; the other columns shrink or wrap instead."""
    columns = [
        Column(h, no_wrap=True, min_width=32) if h in ID_COLUMNS else Column(h, overflow="fold") for h in headers
    ]
    return Table(*columns, title=title)


def _status(value: str) -> str:
    style = STATUS_STYLE.get(value)
    return f"[{style}]{value}[/{style}]" if style else value


def _metric(metrics: dict[str, Any] | None, key: str) -> str:
    value = (metrics or {}).get(key)
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def datasets_table(page: DatasetList) -> None:
    """Datasets as a table: id, name, status, format, images, boxes, classes."""
    table = _table("id", "name", "status", "format", "images", "boxes", "classes")
    for d in page.items:
        classes = ", ".join((d.label_map or {}).values())
        table.add_row(
            d.id, d.name, _status(d.status), d.format, str(d.num_images or "-"), str(d.num_boxes or "-"), classes
        )
    console.print(table)


def dataset_detail(dataset: Dataset) -> None:
    """One dataset: status, counts, classes, problems (first few) and the error, if any."""
    console.print(f"dataset [bold]{dataset.name}[/bold] {dataset.id}: {_status(dataset.status)} ({dataset.format})")
    if dataset.num_images is not None:
        console.print(f"  {dataset.num_images} images, {dataset.num_boxes} boxes; classes {dataset.label_map}")
    if dataset.class_aliases or dataset.requested_label_map:
        aliases, requested = dataset.class_aliases or {}, dataset.requested_label_map
        console.print(f"  class aliases {aliases}; requested label map {requested}", markup=False)
    for problem in dataset.problems[:10]:
        console.print(f"  {problem.get('severity', '')} {problem.get('file', '')}: {problem.get('message', '')}")
    if len(dataset.problems) > 10:
        console.print(f"  ... and {len(dataset.problems) - 10} more problems (--json lists all)")
    if dataset.error:
        console.print(f"  [red]error[/red]: {dataset.error}", markup=True)
    if dataset.suggested_aliases():
        console.print(f"  merge the similar classes: effdet-client datasets relabel {dataset.id} --suggested")


def images_table(page: DatasetImageList) -> None:
    """A page of dataset images: id, path, split, size, boxes (dropped of all), problem codes."""
    table = _table("image", "path", "split", "size", "boxes", "problems", title=f"{page.count} images")
    for image in page.items:
        size = f"{image.width}x{image.height}" if image.width else "-"
        dropped = sum(box.dropped for box in image.boxes)
        boxes = f"{len(image.boxes)} ({dropped} dropped)" if dropped else str(len(image.boxes))
        codes = ", ".join(dict.fromkeys(str(p.get("code", "")) for p in image.problems))
        table.add_row(image.id, image.path, image.split, size, boxes, codes)
    console.print(table)


def jobs_table(page: JobList) -> None:
    """Jobs as a table: id, model, status, step, loss, AP, model id."""
    table = _table("id", "model", "status", "step", "loss", "AP", "model id")
    for job in page.items:
        progress = job.progress
        step = f"{progress.step}/{progress.total_steps}" if progress and progress.step is not None else "-"
        loss = f"{progress.loss:.4f}" if progress and progress.loss is not None else "-"
        table.add_row(
            job.id, job.model, _status(job.status), step, loss, _metric(job.metrics, "ap"), job.model_id or ""
        )
    console.print(table)


def job_detail(job: Job) -> None:
    """One job: status, progress, metrics, error and its model."""
    console.print(f"job {job.id} ({job.model} on dataset {job.dataset_id}): {_status(job.status)}")
    if job.progress and job.progress.step is not None:
        p = job.progress
        console.print(f"  step {p.step}/{p.total_steps}, loss {p.loss}, learning rate {p.learning_rate}")
    if job.metrics:
        keys = ("ap", "ap50", "ap75", "ar100")
        console.print("  " + ", ".join(f"{key} {_metric(job.metrics, key)}" for key in keys))
    if job.error:
        console.print(f"  [red]error[/red]: {job.error}", markup=True)
    if job.model_id:
        console.print(f"  model {job.model_id}")
    for warning in job.warnings:
        console.print(f"  [yellow]warning[/yellow]: {escape(warning)}", markup=True)


def job_warnings(job: Job) -> None:
    """The job's warnings on stderr (beside a progress bar)."""
    for warning in job.warnings:
        status_console.print(f"[yellow]warning[/yellow]: {escape(warning)}", markup=True)


def models_table(page: ModelList) -> None:
    """Model versions as a table: id, name, version, AP, AP50, formats, job."""
    table = _table("id", "name", "version", "AP", "AP50", "formats", "job")
    for m in page.items:
        table.add_row(
            m.id,
            m.name,
            str(m.version),
            _metric(m.metrics, "ap"),
            _metric(m.metrics, "ap50"),
            ", ".join(m.formats),
            m.job_id,
        )
    console.print(table)


def model_detail(model: Model) -> None:
    """One model version: name, version, metrics, classes, formats."""
    console.print(f"model {model.id}: {model.name} v{model.version} from job {model.job_id}")
    console.print(
        f"  AP {_metric(model.metrics, 'ap')}, AP50 {_metric(model.metrics, 'ap50')}; classes {model.label_map}"
    )
    console.print(f"  formats: {', '.join(model.formats) or 'none'}")


def evaluations_table(page: EvaluationList) -> None:
    """Evaluations side by side: id, model and format, split, status, AP, AP50, ms per image."""
    table = _table("id", "model", "split", "status", "AP", "AP50", "ms")
    for e in page.items:
        metrics = (e.result or {}).get("metrics")
        ms = (e.result or {}).get("ms_per_image")
        table.add_row(
            e.id,
            f"{e.model_name} {e.format}",
            e.split,
            _status(e.status),
            _metric(metrics, "ap"),
            _metric(metrics, "ap50"),
            f"{ms:.1f}" if isinstance(ms, int | float) else "-",
        )
    console.print(table)


def evaluation_detail(evaluation: Evaluation) -> None:
    """One evaluation: state, COCO metrics, and per class its AP and its found, false and missed boxes at the
    threshold, then the confusion matrix."""
    console.print(
        f"evaluation {evaluation.id}: {evaluation.model_name} ({evaluation.format}) on dataset "
        f"{evaluation.dataset_id} ({evaluation.split}): {_status(evaluation.status)}"
    )
    if evaluation.progress and not evaluation.finished:
        console.print(f"  {evaluation.progress.get('done')}/{evaluation.progress.get('total')} images")
    if evaluation.error:
        console.print(f"  [red]error[/red]: {escape(evaluation.error)}", markup=True)
    if not evaluation.result:
        return
    metrics, confusion = evaluation.result["metrics"], evaluation.result["confusion"]
    keys = ("ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100")
    console.print("  " + ", ".join(f"{key} {_metric(metrics, key)}" for key in keys))
    console.print(f"  {metrics['num_images']} images, {evaluation.result['ms_per_image']:.1f} ms per image")
    table = _table(
        "class",
        "AP",
        "AP50",
        "found",
        "false",
        "missed",
        "precision",
        "recall",
        title=f"at score >= {evaluation.score_threshold:g}, IoU >= {confusion['iou_threshold']:g}",
    )
    for name, counts in confusion["per_class"].items():
        ap = metrics["per_class"].get(name, {})
        table.add_row(
            name,
            _metric(ap, "ap"),
            _metric(ap, "ap50"),
            str(counts["true_positives"]),
            str(counts["false_positives"]),
            str(counts["misses"]),
            _metric(counts, "precision"),
            _metric(counts, "recall"),
        )
    console.print(table)
    matrix = _table("true \\ detected", *confusion["labels"], title="confusion matrix")
    for label, row in zip(confusion["labels"], confusion["matrix"], strict=True):
        matrix.add_row(label, *(str(v) for v in row))
    console.print(matrix)


def label_errors_table(page: LabelIssueList) -> None:
    """Likely label errors: kind, confidence, image, annotated class, and why."""
    table = _table("kind", "confidence", "image", "annotation", "class", "reason", title=f"{page.count} findings")
    for issue in page.items:
        table.add_row(
            issue.kind,
            f"{issue.confidence:.2f}",
            issue.file_name,
            str(issue.annotation_id or "-"),
            issue.label or "-",
            escape(issue.reason),
        )
    console.print(table)


def detections_table(image: str, detections: list[Detection]) -> None:
    """The detections of one image: label, score and box in pixels."""
    table = _table("label", "score", "xmin", "ymin", "xmax", "ymax", title=f"{image}: {len(detections)} detections")
    for d in detections:
        table.add_row(d.label, f"{d.score:.3f}", *(f"{v:.1f}" for v in d.box))
    console.print(table)


@contextmanager
def transfer(description: str) -> Iterator[ProgressCallback]:
    """A bytes progress bar on stderr; yields the callback that moves it."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=status_console,
    ) as progress:
        task = progress.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total or None)

        yield update


class JobProgressBar:
    """A live bar of a training job (step of total, loss, learning rate, ETA) fed with the job's events."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self.progress, self.task = progress, task

    def __call__(self, event: JobEvent) -> None:
        data = event.data
        if event.kind == "state":
            self.progress.update(self.task, description=str(data.get("status", "")))
        elif event.kind == "progress":
            self.progress.update(
                self.task,
                description="training",
                completed=data.get("step", 0),
                total=data.get("total_steps"),
                loss=f"{data.get('loss', float('nan')):.4f}",
                lr=f"{data.get('learning_rate', float('nan')):.2e}",
                eta=f"{data.get('eta_seconds', 0):.0f}s",
            )
        elif event.kind == "log" and data.get("message"):
            self.progress.console.print(f"  {data['message']}", markup=False)


@contextmanager
def job_progress(job_id: str) -> Iterator[JobProgressBar]:
    """A job's live progress bar on stderr."""
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}  lr {task.fields[lr]}  eta {task.fields[eta]}"),
        console=status_console,
    ) as progress:
        task = progress.add_task("waiting", total=None, loss="-", lr="-", eta="-")
        status_console.print(f"watching job {job_id}")
        yield JobProgressBar(progress, task)


def webhook_detail(webhook: Webhook) -> None:
    """A webhook with the secret its events are signed with."""
    console.print(f"webhook [bold]{webhook.id}[/bold] -> {webhook.url}")
    console.print(f"secret  {webhook.secret}  (HMAC-SHA256 of '<t>.<body>' in the Effdet-Signature header)")


def webhooks_table(page: WebhookList) -> None:
    """Webhooks as a table: id, URL, the one resource followed (blank: all)."""
    table = _table("id", "url", "follows", "created")
    for webhook in page.items:
        table.add_row(webhook.id, webhook.url, webhook.resource_id or "all", f"{webhook.created_at:%Y-%m-%d %H:%M}")
    console.print(table)


def deliveries_table(page: DeliveryList) -> None:
    """Deliveries as a table: event, resource, status, attempts, last answer."""
    table = _table("event", "resource", "status", "attempts", "answer")
    for delivery in page.items:
        answer = str(delivery.response_status) if delivery.response_status else (delivery.error or "-")
        table.add_row(delivery.event, delivery.resource_id, delivery.status, str(delivery.attempts), answer)
    console.print(table)

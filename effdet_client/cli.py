"""`effdet-client`: the service from a terminal (datasets, jobs, models), human output or `--json`.

Exit status: 0 done; 1 the service answered an error, cannot be reached, or the watched job did not succeed;
2 bad command-line usage.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import httpx
import typer

from effdet_client import output
from effdet_client.client import DEFAULT_URL, Client, Deletable
from effdet_client.errors import ApiError, ClientError
from effdet_client.models import (
    Dataset,
    DatasetFormat,
    EvaluationRequest,
    ImageSplit,
    Job,
    JobSubmission,
    ModelFormat,
    PlotName,
)

app = typer.Typer(
    help="Drive an effdet-service: upload datasets, fine-tune, watch, plot, predict, download.",
    pretty_exceptions_show_locals=False,  # locals would include the API key
)
datasets = typer.Typer(help="Upload and inspect datasets.", no_args_is_help=True)
jobs = typer.Typer(help="Submit, follow, plot and cancel fine-tuning jobs.", no_args_is_help=True)
models = typer.Typer(help="List, use and download exported models.", no_args_is_help=True)
evaluations = typer.Typer(help="Evaluate models on datasets and compare them.", no_args_is_help=True)
webhooks = typer.Typer(help="Be told when jobs, conversions and evaluations end.", no_args_is_help=True)
app.add_typer(datasets, name="datasets")
app.add_typer(jobs, name="jobs")
app.add_typer(models, name="models")
app.add_typer(evaluations, name="evaluations")
app.add_typer(webhooks, name="webhooks")

Command = TypeVar("Command", bound=Callable[..., None])
JsonFlag = Annotated[bool, typer.Option("--json", help="print JSON on stdout (for scripts) instead of tables")]


@app.callback(no_args_is_help=True)
def main(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="EFFDET_URL", help="where the service serves")] = DEFAULT_URL,
    api_key: Annotated[str | None, typer.Option(envvar="EFFDET_API_KEY", help="sent as a Bearer token")] = None,
) -> None:
    """Drive an effdet-service: upload datasets, fine-tune, watch, plot, predict, download."""
    http = ctx.obj if isinstance(ctx.obj, httpx.Client) else None  # an embedding program's client (tests)
    client = Client(url, api_key, http=http)
    ctx.obj = client
    ctx.call_on_close(client.close)


def handled(command: Command) -> Command:
    """Turn a ClientError into its message on stderr and exit status 1 (no traceback)."""

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            command(*args, **kwargs)
        except ClientError as err:
            output.fail(err)
            raise typer.Exit(1) from None

    return run  # type: ignore[return-value]


def _client(ctx: typer.Context) -> Client:
    client: Client = ctx.obj
    return client


# --- datasets -----------------------------------------------------------------------------------------------------


ClassAliasesOpt = Annotated[
    str | None,
    typer.Option(
        "--class-aliases", help='JSON object alias -> class name merging spellings: \'{"lp": "licence plate"}\''
    ),
]
LabelMapOpt = Annotated[
    str | None, typer.Option("--label-map", help='JSON object class id -> name fixing ids: \'{"1": "licence plate"}\'')
]


@datasets.command("upload")
@handled
def datasets_upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, help="a dataset folder (zipped on the fly) or a .zip")],
    name: Annotated[str | None, typer.Option(help="default: the folder or zip name")] = None,
    format: Annotated[DatasetFormat, typer.Option(help="annotation format (auto: detected)")] = "auto",
    val_fraction: Annotated[float | None, typer.Option(help="share held out for evaluation (server: 0.1)")] = None,
    class_aliases: ClassAliasesOpt = None,
    label_map: LabelMapOpt = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until it is ready or failed")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Upload a dataset (with a progress bar); exits 1 if --wait ends in failed."""
    client = _client(ctx)
    aliases, labels = _json_object("--class-aliases", class_aliases), _json_object("--label-map", label_map)
    with output.transfer(f"uploading {path.name}") as progress:
        dataset = client.upload_dataset(
            path,
            name=name,
            format=format,
            val_fraction=val_fraction,
            class_aliases=aliases,
            label_map=labels,
            on_progress=progress,
        )
    _finish(client, dataset, wait, json_output)


@datasets.command("relabel")
@handled
def datasets_relabel(
    ctx: typer.Context,
    dataset_id: str,
    class_aliases: ClassAliasesOpt = None,
    label_map: LabelMapOpt = None,
    suggested: Annotated[
        bool, typer.Option("--suggested", help="add the aliases the dataset's similar_class_names warnings suggest")
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="wait until it is ready or failed")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Convert a dataset again from its upload with new class aliases / label map; exits 1 if --wait ends failed."""
    client = _client(ctx)
    aliases, labels = _json_object("--class-aliases", class_aliases), _json_object("--label-map", label_map)
    if suggested:
        current = client.get_dataset(dataset_id)
        proposal = current.suggested_aliases()
        if not proposal:
            raise ClientError(f"dataset {dataset_id} has no similar_class_names warning; nothing to merge")
        aliases = {**(current.class_aliases or {}), **(aliases or {}), **proposal}
    changes: dict[str, Any] = {}
    if aliases is not None:
        changes["class_aliases"] = aliases
    if labels is not None:
        changes["label_map"] = labels
    if not changes:
        raise ClientError("give --class-aliases, --label-map or --suggested; nothing would change")
    _finish(client, client.relabel_dataset(dataset_id, **changes), wait, json_output)


def _finish(client: Client, dataset: Dataset, wait: bool, json_output: bool) -> None:
    """Wait for the conversion if asked, show the dataset, exit 1 when it failed."""
    if wait:
        with output.status_console.status(f"validating and converting {dataset.name}"):
            dataset = client.wait_dataset(dataset.id)
    output.show(dataset, json_output, output.dataset_detail)
    if dataset.status == "failed":
        raise typer.Exit(1)


def _json_object(flag: str, text: str | None) -> dict[str, str] | None:
    """A flag's JSON object (the service checks what it maps); ClientError for text that is not one."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ClientError(
            f'{flag} is not valid JSON ({err}); give an object such as \'{{"lp": "licence plate"}}\''
        ) from None
    if not isinstance(value, dict):
        raise ClientError(f'{flag} must be a JSON object, e.g. \'{{"lp": "licence plate"}}\'')
    return value


@datasets.command("show")
@handled
def datasets_show(ctx: typer.Context, dataset_id: str, json_output: JsonFlag = False) -> None:
    """One dataset: status, counts, classes, problems."""
    dataset = _client(ctx).get_dataset(dataset_id)
    output.show(dataset, json_output, output.dataset_detail)


@datasets.command("list")
@handled
def datasets_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Your datasets, newest first."""
    page = _client(ctx).list_datasets()
    output.show(page, json_output, output.datasets_table)


@datasets.command("images")
@handled
def datasets_images(
    ctx: typer.Context,
    dataset_id: str,
    split: Annotated[ImageSplit | None, typer.Option(help="only this split (train, val, dropped)")] = None,
    label: Annotated[str | None, typer.Option("--class", help="only images with a box of this class")] = None,
    problem: Annotated[str | None, typer.Option(help="only images with a problem of this code")] = None,
    limit: Annotated[int, typer.Option(help="images per page")] = 100,
    offset: Annotated[int, typer.Option(help="images to skip")] = 0,
    json_output: JsonFlag = False,
) -> None:
    """The dataset's images, kept and dropped, those with problems first: split, size, boxes, problem codes."""
    page = _client(ctx).dataset_images(
        dataset_id, split=split, label=label, problem=problem, limit=limit, offset=offset
    )
    output.show(page, json_output, output.images_table)


@datasets.command("thumbnail")
@handled
def datasets_thumbnail(
    ctx: typer.Context,
    dataset_id: str,
    image_id: str,
    output_path: Annotated[Path, typer.Option("--output", help="the JPEG to write")],
    size: Annotated[int, typer.Option(help="longest side in pixels (at most 2048)")] = 256,
) -> None:
    """Save one dataset image as a JPEG with its boxes drawn (dropped ones in red)."""
    output_path.write_bytes(_client(ctx).thumbnail(dataset_id, image_id, size=size))
    output.status_console.print(f"saved {output_path}", markup=False)


# --- jobs ---------------------------------------------------------------------------------------------------------


def _hparams_yaml(value: str | None) -> str | None:
    """--hparams: a YAML file's text, or the value itself (inline YAML or an automl 'a=b,c=d' string)."""
    if value is None:
        return None
    path = Path(value)
    if path.is_file():
        return path.read_text()
    if value.endswith((".yaml", ".yml")):
        raise typer.BadParameter(f"no such file: {value}", param_hint="--hparams")
    return value


@jobs.command("submit")
@handled
def jobs_submit(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Option(help="id of a ready dataset")],
    model: Annotated[str, typer.Option(help="efficientdet-d0 ... d7x, efficientdet-lite0..4")] = "efficientdet-d0",
    hparams: Annotated[
        str | None, typer.Option(help="automl hyperparameters: a YAML file, inline YAML or 'a=b,c=d'")
    ] = None,
    num_steps: Annotated[int | None, typer.Option(help="training steps")] = None,
    num_epochs: Annotated[float | None, typer.Option(help="or epochs over the train split")] = None,
    batch_size: Annotated[int | None, typer.Option(help="server default: 8")] = None,
    pretrained: Annotated[str | None, typer.Option(help="a checkpoint name of GET /v1/checkpoints")] = None,
    var_freeze_expr: Annotated[str | None, typer.Option(help="regex of variables not to train")] = None,
    max_train_seconds: Annotated[float | None, typer.Option(help="wall-clock budget of training")] = None,
    eval_every: Annotated[
        int | None, typer.Option(help="steps between val evaluations; the model is the best by val AP")
    ] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="steps between checkpoints")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of data order and augmentation")] = None,
    callback_url: Annotated[
        list[str] | None, typer.Option(help="a URL that gets a signed POST when the job ends (repeatable)")
    ] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="the same key and submission within 24 h return the first job (safe retries)")
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", help="then follow it as `jobs watch` does")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Submit a fine-tuning job (every problem of the submission is listed at once)."""
    submission = JobSubmission(
        dataset_id=dataset,
        model=model,
        hparams_yaml=_hparams_yaml(hparams),
        num_steps=num_steps,
        num_epochs=num_epochs,
        batch_size=batch_size,
        pretrained=pretrained,
        var_freeze_expr=var_freeze_expr,
        max_train_seconds=max_train_seconds,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
        callback_urls=callback_url or None,
    )
    job = _client(ctx).submit_job(submission, idempotency_key=idempotency_key)
    if watch:
        if not json_output:
            output.job_warnings(job)
        _watch(_client(ctx), job.id, json_output)
    else:
        output.show(job, json_output, output.job_detail)


@jobs.command("show")
@handled
def jobs_show(ctx: typer.Context, job_id: str, json_output: JsonFlag = False) -> None:
    """One job: status, progress, metrics, error, model."""
    job = _client(ctx).get_job(job_id)
    output.show(job, json_output, output.job_detail)


@jobs.command("list")
@handled
def jobs_list(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="only jobs in this state")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Your jobs, newest first."""
    page = _client(ctx).list_jobs(status)
    output.show(page, json_output, output.jobs_table)


@jobs.command("cancel")
@handled
def jobs_cancel(
    ctx: typer.Context,
    job_id: str,
    keep_model: Annotated[
        bool, typer.Option(help="finish training now and export the model from the weights so far")
    ] = False,
    json_output: JsonFlag = False,
) -> None:
    """Cancel a queued job, or ask a running one to stop (or, with --keep-model, to finish now)."""
    job = _client(ctx).cancel_job(job_id, keep_model=keep_model)
    output.show(job, json_output, output.job_detail)


def _watch(client: Client, job_id: str, json_output: bool) -> None:
    """Follow the job to its end; exit 1 unless it succeeded."""
    job: Job
    if json_output:
        job = client.watch_job(job_id, output.emit_json)
    else:
        with output.job_progress(job_id) as bar:
            job = client.watch_job(job_id, bar)
        output.job_detail(job)
    if job.status != "succeeded":
        raise typer.Exit(1)


@jobs.command("watch")
@handled
def jobs_watch(ctx: typer.Context, job_id: str, json_output: JsonFlag = False) -> None:
    """Follow a job live (progress bar with loss; --json: one event per line); exits 1 unless it succeeds."""
    _watch(_client(ctx), job_id, json_output)


@jobs.command("plot")
@handled
def jobs_plot(
    ctx: typer.Context,
    job_id: str,
    output_dir: Annotated[Path, typer.Option("--output", help="folder for the PNGs")] = Path("."),
    name: Annotated[list[PlotName] | None, typer.Option(help="a plot to save (repeat it; default: all)")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Save the job's plots (loss, learning rate, precision-recall) as PNGs drawn by the service."""
    client = _client(ctx)
    client.get_job(job_id)  # an unknown job is an error, not a plot to skip
    written: dict[str, str] = {}
    skipped: dict[str, str] = {}
    output_dir.mkdir(parents=True, exist_ok=True)
    for plot in name or list(PlotName):
        try:
            png = client.plot(job_id, plot)
        except ApiError as err:
            if err.status_code not in (404, 409):
                raise
            skipped[plot] = "; ".join(err.problems)
            continue
        path = output_dir / f"job-{job_id}-{plot}.png"
        path.write_bytes(png)
        written[plot] = str(path)
    if json_output:
        output.emit_json({"written": written, "skipped": skipped})
    else:
        for title, saved in written.items():
            output.console.print(f"{title}: {saved}")
        for title, reason in skipped.items():
            output.status_console.print(f"{title}: not written ({reason})", markup=False)
    if not written:
        raise typer.Exit(1)


# --- models -------------------------------------------------------------------------------------------------------


@models.command("list")
@handled
def models_list(ctx: typer.Context, json_output: JsonFlag = False) -> None:
    """Your exported model versions, newest first."""
    page = _client(ctx).list_models()
    output.show(page, json_output, output.models_table)


@models.command("show")
@handled
def models_show(ctx: typer.Context, model_id: str, json_output: JsonFlag = False) -> None:
    """One model version: metrics, classes, formats."""
    model = _client(ctx).get_model(model_id)
    output.show(model, json_output, output.model_detail)


@models.command("predict")
@handled
def models_predict(
    ctx: typer.Context,
    model_id: str,
    images: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="image files")],
    score_threshold: Annotated[float | None, typer.Option(min=0, max=1, help="default: the export's")] = None,
    max_detections: Annotated[int | None, typer.Option(min=1)] = None,
    draw: Annotated[Path | None, typer.Option(help="folder for copies of the images with boxes drawn")] = None,
    blur: Annotated[
        Path | None, typer.Option(help="folder for copies of the images with every detection blurred (same format)")
    ] = None,
    pixelate: Annotated[Path | None, typer.Option(help="folder for copies with every detection pixelated")] = None,
    masks: Annotated[
        Path | None,
        typer.Option(help="folder for each image's class map, a PNG of class ids (models with a segmentation head)"),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Detect objects in images: boxes in pixels, labels and scores (optionally drawn, blurred or pixelated by the
    service, and a segmentation model's class maps saved)."""
    client = _client(ctx)
    results = []
    anonymised: list[tuple[Path, Literal["blur", "pixelate"]]] = []
    anonymised += [(blur, "blur")] if blur else []
    anonymised += [(pixelate, "pixelate")] if pixelate else []
    for image in images:
        detections = client.predict(model_id, image, score_threshold=score_threshold, max_detections=max_detections)
        drawn = None
        if draw is not None:
            draw.mkdir(parents=True, exist_ok=True)
            drawn = draw / f"{image.stem}.jpg"
            drawn.write_bytes(
                client.annotate(model_id, image, score_threshold=score_threshold, max_detections=max_detections)
            )
        for folder, how in anonymised:
            folder.mkdir(parents=True, exist_ok=True)
            copy = client.anonymise(
                model_id, image, how, score_threshold=score_threshold, max_detections=max_detections
            )
            (folder / image.name).write_bytes(copy)
        mask = None
        if masks is not None:
            masks.mkdir(parents=True, exist_ok=True)
            mask = masks / f"{image.stem}.png"
            mask.write_bytes(client.class_map(model_id, image))
        if json_output:
            results.append(
                {
                    "image": str(image),
                    "detections": [d.model_dump(mode="json") for d in detections],
                    "drawn": str(drawn) if drawn else None,
                    "mask": str(mask) if mask else None,
                }
            )
        else:
            output.detections_table(str(image), detections)
            if drawn:
                output.console.print(f"drawn: {drawn}")
            if mask:
                output.console.print(f"class map: {mask}")
    if json_output:
        output.emit_json(results)


@models.command("download")
@handled
def models_download(
    ctx: typer.Context,
    model_id: str,
    format: Annotated[ModelFormat, typer.Option(help="saved_model (a zip), tflite or tflite_float16")] = "saved_model",
    output_path: Annotated[Path, typer.Option("--output", help="a folder, or the file to write")] = Path("."),
    json_output: JsonFlag = False,
) -> None:
    """Download a model (SavedModel zip or .tflite) with a progress bar."""
    with output.transfer(f"downloading {model_id}") as progress:
        path = _client(ctx).download_model(model_id, output_path, format=format, on_progress=progress)
    if json_output:
        output.emit_json({"path": str(path), "bytes": path.stat().st_size})
    else:
        output.console.print(f"saved {path} ({path.stat().st_size} bytes)")


# --- evaluations --------------------------------------------------------------------------------------------------


@evaluations.command("create")
@handled
def evaluations_create(
    ctx: typer.Context,
    model_id: str,
    dataset_id: Annotated[
        str | None, typer.Option("--dataset", help="a ready dataset whose classes the model knows (default: its own)")
    ] = None,
    split: Annotated[Literal["val", "train", "all"] | None, typer.Option(help="default val")] = None,
    score_threshold: Annotated[
        float | None, typer.Option(min=0, max=1, help="where boxes count as found (default: the model's)")
    ] = None,
    format: Annotated[ModelFormat | None, typer.Option(help="an exported format (default: what predict runs)")] = None,
    wait: Annotated[bool, typer.Option(help="wait for the result and show it")] = True,
    json_output: JsonFlag = False,
) -> None:
    """Evaluate a model on a dataset: COCO metrics, per-class AP and counts, confusion matrix."""
    client = _client(ctx)
    request = EvaluationRequest(dataset_id=dataset_id, split=split, score_threshold=score_threshold, format=format)
    evaluation = client.evaluate(model_id, request)
    if wait:
        evaluation = client.wait_evaluation(evaluation.id)
    output.show(evaluation, json_output, output.evaluation_detail)
    if wait and evaluation.status != "succeeded":
        raise typer.Exit(1)


@evaluations.command("show")
@handled
def evaluations_show(ctx: typer.Context, evaluation_id: str, json_output: JsonFlag = False) -> None:
    """One evaluation: status, metrics, per-class counts and confusion matrix."""
    output.show(_client(ctx).get_evaluation(evaluation_id), json_output, output.evaluation_detail)


@evaluations.command("list")
@handled
def evaluations_list(
    ctx: typer.Context,
    dataset_id: Annotated[str | None, typer.Option("--dataset", help="compare every model evaluated on it")] = None,
    model_id: Annotated[str | None, typer.Option("--model", help="only this model's evaluations")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Your evaluations, newest first; with --dataset, the models evaluated on it side by side."""
    page = _client(ctx).list_evaluations(dataset_id=dataset_id, model_id=model_id)
    output.show(page, json_output, output.evaluations_table)


@evaluations.command("cancel")
@handled
def evaluations_cancel(ctx: typer.Context, evaluation_id: str, json_output: JsonFlag = False) -> None:
    """Cancel a queued or running evaluation."""
    output.show(_client(ctx).cancel_evaluation(evaluation_id), json_output, output.evaluation_detail)


IssueKindOpt = Annotated[
    Literal["missing_box", "spurious_box", "wrong_class", "loose_box"] | None, typer.Option(help="only this kind")
]


@evaluations.command("label-errors")
@handled
def evaluations_label_errors(
    ctx: typer.Context,
    evaluation_id: str,
    kind: IssueKindOpt = None,
    min_confidence: Annotated[float, typer.Option(min=0, max=1)] = 0.0,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_output: JsonFlag = False,
) -> None:
    """The annotations most likely wrong, most confident first, with the reason for each."""
    page = _client(ctx).label_errors(evaluation_id, kind=kind, min_confidence=min_confidence, limit=limit)
    output.show(page, json_output, output.label_errors_table)


@datasets.command("fix")
@handled
def datasets_fix(
    ctx: typer.Context,
    evaluation_id: Annotated[str, typer.Option("--from-evaluation", help="take the fixes its findings suggest")],
    min_confidence: Annotated[float, typer.Option(min=0, max=1, help="only findings at least this sure")] = 0.5,
    kind: IssueKindOpt = None,
    name: Annotated[str | None, typer.Option(help="the new version's name")] = None,
    wait: Annotated[bool, typer.Option(help="wait until the new version is ready")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Make a new version of an evaluation's dataset with the fixes its findings suggest (the old one stays)."""
    client = _client(ctx)
    evaluation = client.get_evaluation(evaluation_id)
    issues = client.label_errors(evaluation_id, kind=kind, min_confidence=min_confidence, limit=1000).items
    if not issues:
        output.status_console.print("no finding is that sure; nothing to fix")
        raise typer.Exit(1)
    fixed = client.fix_dataset(evaluation.dataset_id, [issue.suggested_fix() for issue in issues], name=name)
    _finish(client, fixed, wait, json_output)


def _deleter(kind: Deletable, noun: str) -> Callable[..., None]:
    """A `delete ID` command for one collection."""

    @handled
    def delete(ctx: typer.Context, resource_id: Annotated[str, typer.Argument(help=f"the {noun}'s id")]) -> None:
        _client(ctx).delete(kind, resource_id)
        typer.echo(f"deleted {noun} {resource_id}")

    delete.__doc__ = f"Delete a {noun} with its files (the service says what to delete or cancel first)."
    return delete


for group, kind, noun in (
    (datasets, "datasets", "dataset"),
    (jobs, "jobs", "job"),
    (models, "models", "model"),
    (evaluations, "evaluations", "evaluation"),
    (webhooks, "webhooks", "webhook"),
):
    group.command("delete")(_deleter(kind, noun))  # type: ignore[arg-type]


@webhooks.command("add")
@handled
def webhooks_add(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="an http(s) URL at a public address")],
    json_output: JsonFlag = False,
) -> None:
    """Have every end of your jobs, conversions and evaluations POSTed to URL; prints the signing secret."""
    output.show(_client(ctx).add_webhook(url), json_output, output.webhook_detail)


@webhooks.command("list")
@handled
def webhooks_list(
    ctx: typer.Context,
    resource: Annotated[str | None, typer.Option(help="only the callbacks of this job, dataset or evaluation")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Your webhooks and callbacks."""
    output.show(_client(ctx).list_webhooks(resource), json_output, output.webhooks_table)


@webhooks.command("deliveries")
@handled
def webhooks_deliveries(ctx: typer.Context, webhook_id: str, json_output: JsonFlag = False) -> None:
    """A webhook's deliveries, newest first: event, status, attempts, the receiver's last answer."""
    output.show(_client(ctx).deliveries(webhook_id), json_output, output.deliveries_table)

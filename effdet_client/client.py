"""`Client`: the effdet-service HTTP API as Python methods that return pydantic models and raise `ApiError` with
the server's `detail` on any 4xx/5xx."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel

from effdet_client.archive import ProgressCallback, ProgressReader, zip_folder
from effdet_client.errors import ApiError, ClientError, ServiceUnreachableError
from effdet_client.models import (
    Dataset,
    DatasetFormat,
    DatasetImageList,
    DatasetList,
    DeliveryList,
    Detection,
    Evaluation,
    EvaluationList,
    EvaluationRequest,
    ImageSplit,
    Job,
    JobEvent,
    JobList,
    JobSubmission,
    LabelIssueList,
    Model,
    ModelFormat,
    ModelList,
    Webhook,
    WebhookList,
)

Deletable = Literal["datasets", "jobs", "models", "evaluations", "webhooks"]
"""The collections whose members DELETE removes."""

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = httpx.Timeout(60.0, connect=10.0)
"""Read timeout above the events stream's 15 s keep-alive; connect fails fast when nothing listens."""
DOWNLOAD_CHUNK = 1 << 20
RECONNECT_S = 1.0

Answer = TypeVar("Answer", bound=BaseModel)


class _Keep:
    """The default of a re-label field left out: the dataset keeps its value."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()


def _detail(response: httpx.Response) -> Any:
    """The `detail` of an error answer (the body text when it is not the API's JSON)."""
    try:
        body = response.json()
    except ValueError:
        return response.text or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body


def _attachment_name(response: httpx.Response, fallback: str) -> str:
    """The file name of a Content-Disposition attachment, reduced to a plain name."""
    found = re.search(r'filename="?([^";]+)"?', response.headers.get("content-disposition", ""))
    return Path(found.group(1)).name if found else fallback


def _sse_events(lines: Iterator[str]) -> Iterator[JobEvent]:
    """JobEvents from a text/event-stream: one per blank-line-terminated block with `data:` lines."""
    data: list[str] = []
    for line in lines:
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield JobEvent.model_validate_json("\n".join(data))
            data = []


class Client:
    """A connection to one effdet-service; use as a context manager (or call `close`)."""

    def __init__(
        self,
        url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: httpx.Timeout | float = TIMEOUT,
        http: httpx.Client | None = None,
    ) -> None:
        """Talk to the service at url (or through an existing httpx client, e.g. a FastAPI TestClient)."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self._http = http or httpx.Client(base_url=url.rstrip("/"), timeout=timeout)
        self._headers = headers
        self.url = str(self._http.base_url).rstrip("/")

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool (not one that was passed in)."""
        if self._owns_http:
            self._http.close()

    # --- transport ---------------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, *, headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """One request; ApiError for an error status, ServiceUnreachableError when nothing answers."""
        try:
            response = self._http.request(method, path, headers={**self._headers, **(headers or {})}, **kwargs)
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        if response.is_error:
            raise ApiError(response.status_code, _detail(response), method, path)
        return response

    def _unreachable(self, err: Exception) -> ServiceUnreachableError:
        return ServiceUnreachableError(
            f"cannot reach the service at {self.url} ({type(err).__name__}: {err}); is it running (`make run`)? "
            "Set --url or EFFDET_URL to where it serves"
        )

    def _get(self, path: str, model: type[Answer], **params: Any) -> Answer:
        return model.model_validate(self._send("GET", path, params=params or None).json())

    def delete(self, kind: Deletable, resource_id: str) -> None:
        """Delete a dataset, job, model or evaluation with its files (a 409 says what to delete or cancel first)."""
        self._send("DELETE", f"/v1/{kind}/{resource_id}")

    # --- webhooks ----------------------------------------------------------------------------------------------

    def add_webhook(self, url: str) -> Webhook:
        """Have every end of your jobs, conversions and evaluations POSTed to url, signed with the secret returned."""
        return Webhook.model_validate(self._send("POST", "/v1/webhooks", json={"url": url}).json())

    def list_webhooks(self, resource_id: str | None = None) -> WebhookList:
        """Your webhooks (and the callbacks of one resource, with resource_id)."""
        return self._get("/v1/webhooks", WebhookList, **({"resource_id": resource_id} if resource_id else {}))

    def deliveries(self, webhook_id: str) -> DeliveryList:
        """A webhook's deliveries, newest first, with their attempts and the receiver's answers."""
        return self._get(f"/v1/webhooks/{webhook_id}/deliveries", DeliveryList)

    # --- datasets ----------------------------------------------------------------------------------------------

    def list_datasets(self) -> DatasetList:
        """Your datasets, newest first."""
        return self._get("/v1/datasets", DatasetList)

    def get_dataset(self, dataset_id: str) -> Dataset:
        """One dataset: status, counts, classes, statistics and problems."""
        return self._get(f"/v1/datasets/{dataset_id}", Dataset)

    def dataset_images(
        self,
        dataset_id: str,
        *,
        split: ImageSplit | None = None,
        label: str | None = None,
        problem: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> DatasetImageList:
        """A page of the dataset's images (those with problems first), filtered by split, class or problem code."""
        params = {"split": split, "class": label, "problem": problem, "limit": limit, "offset": offset}
        present = {key: value for key, value in params.items() if value is not None}
        return self._get(f"/v1/datasets/{dataset_id}/images", DatasetImageList, **present)

    def thumbnail(self, dataset_id: str, image_id: str, *, size: int = 256) -> bytes:
        """One dataset image as a JPEG (longest side at most size, up to 2048) with its boxes drawn by the server."""
        return self._send(
            "GET", f"/v1/datasets/{dataset_id}/images/{image_id}/thumbnail", params={"size": size}
        ).content

    def upload_dataset(
        self,
        path: Path,
        *,
        name: str | None = None,
        format: DatasetFormat = "auto",
        val_fraction: float | None = None,
        class_aliases: Mapping[str, str] | None = None,
        label_map: Mapping[int, str] | Mapping[str, str] | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Dataset:
        """Upload a dataset zip, or a folder (zipped on the fly into a temporary file); it is then `validating`.

        class_aliases ({"lp": "licence plate"}) merges spellings of one class; label_map ({1: "licence plate"})
        fixes the class ids and their order."""
        path = Path(path)
        fields = {"format": format, "name": name or path.stem, "val_fraction": val_fraction}
        data = {key: str(value) for key, value in fields.items() if value is not None}
        if class_aliases:
            data["class_aliases"] = json.dumps(dict(class_aliases))
        if label_map:
            data["label_map"] = json.dumps({str(k): v for k, v in label_map.items()})
        if path.is_dir():
            with tempfile.TemporaryFile(suffix=".zip") as archive:
                zip_folder(path, archive)
                return self._upload(archive, f"{path.name}.zip", data, on_progress)
        if not path.is_file():
            raise ClientError(f"{path} is neither a folder nor a zip file")
        with path.open("rb") as archive:
            return self._upload(archive, path.name, data, on_progress)

    def _upload(
        self, archive: Any, filename: str, data: dict[str, str], on_progress: ProgressCallback | None
    ) -> Dataset:
        archive.seek(0)
        reader = ProgressReader(archive, on_progress)
        files = {"file": (filename, reader, "application/zip")}
        return Dataset.model_validate(self._send("POST", "/v1/datasets", files=files, data=data).json())

    def relabel_dataset(
        self,
        dataset_id: str,
        *,
        class_aliases: Mapping[str, str] | _Keep | None = KEEP,
        label_map: Mapping[int, str] | Mapping[str, str] | _Keep | None = KEEP,
    ) -> Dataset:
        """Convert a ready or failed dataset again from its upload with new class aliases and/or label map (one
        left out keeps its value, None clears it); it is then `validating` (409 while validating or in use)."""
        body: dict[str, Any] = {}
        if not isinstance(class_aliases, _Keep):
            body["class_aliases"] = None if class_aliases is None else dict(class_aliases)
        if not isinstance(label_map, _Keep):
            body["label_map"] = None if label_map is None else {str(k): v for k, v in label_map.items()}
        return Dataset.model_validate(self._send("PATCH", f"/v1/datasets/{dataset_id}", json=body).json())

    def wait_dataset(self, dataset_id: str, *, timeout: float | None = None, poll_s: float = 1.0) -> Dataset:
        """Poll until the dataset is no longer `validating` (ready or failed); ClientError after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while (dataset := self.get_dataset(dataset_id)).status == "validating":
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(f"dataset {dataset_id} is still validating after {timeout:.0f} s")
            time.sleep(poll_s)
        return dataset

    # --- jobs --------------------------------------------------------------------------------------------------

    def submit_job(self, submission: JobSubmission, *, idempotency_key: str | None = None) -> Job:
        """Submit a fine-tuning job (validated in full by the server: a 422 lists every problem). With an
        idempotency key, a retry of the same submission within 24 h returns the first job instead of a second."""
        body = submission.model_dump(mode="json", exclude_none=True)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return Job.model_validate(self._send("POST", "/v1/jobs", json=body, headers=headers).json())

    def list_jobs(self, status: str | None = None) -> JobList:
        """Your jobs, newest first (optionally only those in one state)."""
        return self._get("/v1/jobs", JobList, **({"status": status} if status else {}))

    def get_job(self, job_id: str) -> Job:
        """One job: status, progress, metrics, error and the model it produced."""
        return self._get(f"/v1/jobs/{job_id}", Job)

    def cancel_job(self, job_id: str, *, keep_model: bool = False) -> Job:
        """Cancel a queued job at once, or ask a running one to stop (with keep_model: to finish training now and
        export the model from the weights so far)."""
        params = {"keep_model": "true"} if keep_model else None
        return Job.model_validate(self._send("POST", f"/v1/jobs/{job_id}/cancel", params=params).json())

    def events(self, job_id: str, *, after: int = 0, follow: bool = True) -> Iterator[JobEvent]:
        """The job's events after an id, as the server streams them (until the job ends when following)."""
        params: dict[str, str | int] = {"after": after, "follow": str(follow).lower()}
        path = f"/v1/jobs/{job_id}/events"
        try:
            with self._http.stream("GET", path, params=params, headers=self._headers) as response:
                if response.is_error:
                    response.read()
                    raise ApiError(response.status_code, _detail(response), "GET", path)
                yield from _sse_events(response.iter_lines())
        except httpx.TransportError as err:
            raise self._unreachable(err) from err

    def watch_job(self, job_id: str, on_event: Callable[[JobEvent], None] | None = None) -> Job:
        """Follow a job's events until it has finished (reconnecting after a dropped stream); the final job."""
        after = 0
        while True:
            try:
                for event in self.events(job_id, after=after):
                    after = event.id
                    if on_event is not None:
                        on_event(event)
            except ServiceUnreachableError:
                time.sleep(RECONNECT_S)
            job = self.get_job(job_id)
            if job.finished:
                return job

    def plot(self, job_id: str, name: str) -> bytes:
        """A PNG of the job's `loss` or `learning_rate` curve, or of its `pr_curve` (precision-recall) curves."""
        return self._send("GET", f"/v1/jobs/{job_id}/plots/{name}.png").content

    # --- evaluations -------------------------------------------------------------------------------------------

    def evaluate(self, model_id: str, request: EvaluationRequest) -> Evaluation:
        """Queue an evaluation of a model on a dataset (a 422 lists every problem: classes, split, format)."""
        body = request.model_dump(mode="json", exclude_none=True)
        return Evaluation.model_validate(self._send("POST", f"/v1/models/{model_id}/evaluations", json=body).json())

    def list_evaluations(self, *, dataset_id: str | None = None, model_id: str | None = None) -> EvaluationList:
        """Your evaluations, newest first; by dataset, every model evaluated on it side by side."""
        filters = {k: v for k, v in {"dataset_id": dataset_id, "model_id": model_id}.items() if v is not None}
        return self._get("/v1/evaluations", EvaluationList, **filters)

    def get_evaluation(self, evaluation_id: str) -> Evaluation:
        """One evaluation: status, progress and its result."""
        return self._get(f"/v1/evaluations/{evaluation_id}", Evaluation)

    def cancel_evaluation(self, evaluation_id: str) -> Evaluation:
        """Cancel a queued evaluation at once, or a running one at its next image."""
        return Evaluation.model_validate(self._send("POST", f"/v1/evaluations/{evaluation_id}/cancel").json())

    def label_errors(
        self, evaluation_id: str, *, kind: str | None = None, min_confidence: float = 0.0, limit: int = 100
    ) -> LabelIssueList:
        """A succeeded evaluation's likely label errors, most confident first."""
        params: dict[str, Any] = {"min_confidence": min_confidence, "limit": limit}
        if kind is not None:
            params["kind"] = kind
        return self._get(f"/v1/evaluations/{evaluation_id}/label-errors", LabelIssueList, **params)

    def fix_dataset(self, dataset_id: str, fixes: list[dict[str, Any]], *, name: str | None = None) -> Dataset:
        """A new version of a dataset with the fixes applied (the old one stays); it converts like an upload."""
        body: dict[str, Any] = {"fixes": fixes, **({"name": name} if name else {})}
        return Dataset.model_validate(self._send("POST", f"/v1/datasets/{dataset_id}/versions", json=body).json())

    def wait_evaluation(self, evaluation_id: str, *, timeout: float | None = None, poll_s: float = 1.0) -> Evaluation:
        """Poll until the evaluation ends (succeeded, failed or cancelled); ClientError after timeout seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not (evaluation := self.get_evaluation(evaluation_id)).finished:
            if deadline is not None and time.monotonic() > deadline:
                raise ClientError(f"evaluation {evaluation_id} is still {evaluation.status} after {timeout:.0f} s")
            time.sleep(poll_s)
        return evaluation

    # --- models ------------------------------------------------------------------------------------------------

    def list_models(self) -> ModelList:
        """Your exported model versions, newest first."""
        return self._get("/v1/models", ModelList)

    def get_model(self, model_id: str) -> Model:
        """One model version: variant, version, metrics, classes and formats."""
        return self._get(f"/v1/models/{model_id}", Model)

    def _predict(self, model_id: str, image: Path, options: dict[str, Any], **params: str) -> httpx.Response:
        image = Path(image)
        data = {key: str(value) for key, value in options.items() if value is not None}
        with image.open("rb") as handle:
            files = {"file": (image.name, handle)}
            return self._send("POST", f"/v1/models/{model_id}/predict", files=files, data=data, params=params)

    def predict(
        self,
        model_id: str,
        image: Path,
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
        runtime: ModelFormat | None = None,
    ) -> list[Detection]:
        """Detections of one image file (boxes in its pixels), above the threshold (default: the export's), run by
        one of the model's exported formats (default: its default_runtime)."""
        options = {"score_threshold": score_threshold, "max_detections": max_detections, "runtime": runtime}
        answer = self._predict(model_id, image, options, mask="none").json()  # a segmenter's answer too
        return [Detection.model_validate(item) for item in answer]

    def class_map(self, model_id: str, image: Path) -> bytes:
        """A segmentation model's class map of one image file: a PNG at its size whose pixel values are class ids
        (0 background, k the class of label id k)."""
        return self._predict(model_id, image, {}, mask="png").content

    def annotate(
        self, model_id: str, image: Path, *, score_threshold: float | None = None, max_detections: int | None = None
    ) -> bytes:
        """The image as a JPEG with its detections drawn by the server."""
        options = {"score_threshold": score_threshold, "max_detections": max_detections}
        return self._predict(model_id, image, options, annotated="boxes").content

    def anonymise(
        self,
        model_id: str,
        image: Path,
        how: Literal["blur", "pixelate"] = "blur",
        *,
        score_threshold: float | None = None,
        max_detections: int | None = None,
    ) -> bytes:
        """The image with every detection above the threshold blurred or pixelated by the server, at its size and in
        its format (e.g. licence plates made unreadable)."""
        options = {"score_threshold": score_threshold, "max_detections": max_detections}
        return self._predict(model_id, image, options, annotated=how).content

    def download_model(
        self,
        model_id: str,
        target: Path,
        *,
        format: ModelFormat = "saved_model",
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Save the model (SavedModel zip or .tflite) into the folder target under the server's file name, or
        as target itself when it is not a folder; written to a temporary file first, so never half a file."""
        path = f"/v1/models/{model_id}/download"
        target = Path(target)
        try:
            with self._http.stream("GET", path, params={"format": format}, headers=self._headers) as response:
                if response.is_error:
                    response.read()
                    raise ApiError(response.status_code, _detail(response), "GET", path)
                destination = target / _attachment_name(response, f"{model_id}.zip") if target.is_dir() else target
                total = int(response.headers.get("content-length", 0))
                destination.parent.mkdir(parents=True, exist_ok=True)
                part = destination.with_name(f".{destination.name}.part")
                try:
                    with part.open("wb") as output:
                        for chunk in response.iter_bytes(DOWNLOAD_CHUNK):
                            output.write(chunk)
                            if on_progress is not None:
                                on_progress(response.num_bytes_downloaded, total)
                    os.replace(part, destination)
                finally:
                    part.unlink(missing_ok=True)
        except httpx.TransportError as err:
            raise self._unreachable(err) from err
        return destination

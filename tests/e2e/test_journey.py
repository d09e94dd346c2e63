"""One journey through the service as deployed, training a single job: `effdet-service run` (uvicorn and a Celery
worker) on the local PostgreSQL and Redis with API keys on. The `effdet-client` command uploads the real raccoon
dataset with its progress bar and waits for it; Debian's chromium (driven by Playwright) asks for the key, uploads
a 12-image subset through the dashboard's form, shows its statistics, reports bad hyperparameters next to the field
and starts a tiny job through the form; the browser follows its progress to the end while `effdet-client jobs watch`
follows the same job; then the try-it box draws boxes, the client plots, predicts with boxes drawn and downloads,
plain HTTP checks the predictions in image pixels, and Ctrl-C stops the API and the worker."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import RACCOON, Runner, alive, descendants
from tests.helpers.browser import chromium

CLIENT = Path(sys.executable).with_name("effdet-client")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
API_KEY = "journey-test-key"
RACCOON_IMAGES = 196
"""Images of the real raccoon dataset that have boxes (4 of its 200 have none)."""
SUBSET = "raccoon-subset"
NUM_IMAGES = 12
STEPS = 4
MAX_BOXES = 5
JOB_HPARAMS = "image_size: 128\nfpn_cell_repeats: 1\nbox_class_repeats: 1\n"
"""The smallest job that still trains, evaluates and exports: one BiFPN cell and one head layer trace fastest."""
DEGENERATE_BOX = (
    "<object><name>raccoon</name><bndbox><xmin>300</xmin><ymin>50</ymin><xmax>200</xmax><ymax>150</ymax></bndbox>"
    "</object>"
)
JOB_TIMEOUT_MS = 600_000
RECORD_PROGRESS = """
window.progressSeen = [];
new MutationObserver((changes) => {
  const bar = changes.filter((change) => change.target.id === "job-progress");
  bar.forEach((change, i) => {
    const next = bar[i + 1];
    const value = next?.target === change.target ? next.oldValue : change.target.getAttribute("value");
    window.progressSeen.push(Number(value));
  });
}).observe(document, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ["value"] });
"""
"""Records every value the job page's progress bar takes (installed before the page's own scripts run). Changes made
in one task reach the observer together, so a change's own value is the next change's old value: reading the
attribute would give the last value for all of them ([4, 4, 4] when three progress events came in one read)."""


# --- the command-line client -----------------------------------------------------------------------------------


class Cli:
    """`effdet-client --url URL --api-key KEY ...` as a user types it; an unexpected exit shows its output and the
    runner's."""

    def __init__(self, url: str, runner: Runner) -> None:
        self.url = url
        self.runner = runner

    def command(self, *args: object) -> list[str]:
        return [str(CLIENT), "--url", self.url, "--api-key", API_KEY, *map(str, args)]

    def run(self, *args: object, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.command(*args), capture_output=True, text=True, timeout=480, check=False)
        if ok:
            assert done.returncode == 0, f"{args}\n{done.stdout}\n{done.stderr}\nrunner:\n{self.runner.tail()}"
        return done

    def json(self, *args: object) -> Any:
        return json.loads(self.run(*args, "--json").stdout)


def _client_uploads_raccoons(cli: Cli, http: httpx.Client) -> str:
    """The real raccoon folder, zipped on the fly with a progress bar; --wait returns it ready."""
    upload = cli.run("datasets", "upload", RACCOON, "--val-fraction", 0.2, "--wait", "--json")
    assert "uploading raccoon" in upload.stderr
    dataset = json.loads(upload.stdout)
    assert (dataset["status"], dataset["num_images"]) == ("ready", RACCOON_IMAGES), dataset.get("error")
    assert dataset["label_map"] == {"1": "raccoon"}
    assert http.get(f"/v1/datasets/{dataset['id']}").json()["stats"]
    return str(dataset["id"])


def _client_submits_and_cancels(cli: Cli, dataset_id: str, hparams: Path) -> None:
    """A second job queued behind the running one is cancelled at once and never trains; watching it exits 1."""
    submit = ("jobs", "submit", "--dataset", dataset_id, "--model", "efficientdet-d0", "--hparams", hparams)
    queued = cli.json(*submit, "--num-steps", STEPS, "--batch-size", 2)
    assert queued["status"] == "queued", queued
    assert cli.json("jobs", "cancel", queued["id"])["status"] == "cancelled"
    assert cli.run("jobs", "watch", queued["id"], ok=False).returncode == 1
    missing = cli.run("jobs", "watch", "no-such-job", ok=False)
    assert missing.returncode == 1
    assert "404" in missing.stderr


def _client_uses_model(cli: Cli, job_id: str, model_id: str, folder: Path) -> None:
    plots = cli.json("jobs", "plot", job_id, "--output", folder / "plots")
    assert sorted(plots["written"]) == ["learning_rate", "loss", "pr_curve"], plots
    for path in plots["written"].values():
        assert Image.open(path).format == "PNG"

    image = RACCOON / "images" / "raccoon-1.jpg"
    predict = ("models", "predict", model_id, image, "--score-threshold", 0, "--max-detections", MAX_BOXES)
    [result] = cli.json(*predict, "--draw", folder / "drawn", "--blur", folder / "blurred")
    assert 0 < len(result["detections"]) <= MAX_BOXES
    assert {d["label"] for d in result["detections"]} == {"raccoon"}
    drawn = Image.open(result["drawn"])
    assert (drawn.format, drawn.size) == ("JPEG", Image.open(image).size)
    blurred = Image.open(folder / "blurred" / image.name)  # anonymised: the detections blurred, the image kept
    assert (blurred.format, blurred.size) == ("JPEG", Image.open(image).size)

    (folder / "models").mkdir()
    download = cli.json("models", "download", model_id, "--output", folder / "models")
    assert any(name.endswith("saved_model.pb") for name in zipfile.ZipFile(download["path"]).namelist())


def _client_evaluates(cli: Cli, model_id: str, dataset_id: str) -> None:
    """The model evaluated by a worker on the whole raccoon set's val split, and listed for comparison."""
    evaluation = cli.json("evaluations", "create", model_id, "--dataset", dataset_id, "--score-threshold", 0.3)
    assert evaluation["status"] == "succeeded", evaluation
    result = evaluation["result"]
    assert result["metrics"]["num_images"] == evaluation["progress"]["total"] > 0
    assert list(result["metrics"]["per_class"]) == ["raccoon"]
    [[found, missed], [_, _]] = result["confusion"]["matrix"]
    assert found + missed > 0, "every val box is found or missed"
    compared = cli.json("evaluations", "list", "--dataset", dataset_id)
    assert [e["id"] for e in compared["items"]] == [evaluation["id"]]
    shown = cli.run("evaluations", "show", evaluation["id"]).stdout
    assert "confusion matrix" in shown
    assert "raccoon" in shown


# --- plain HTTP ------------------------------------------------------------------------------------------------


def _http_predicts(http: httpx.Client, job_id: str) -> None:
    """The finished job over plain HTTP: metrics, the model version, and detections in the image's pixels."""
    job = http.get(f"/v1/jobs/{job_id}").json()
    assert (job["status"], job["progress"]["step"]) == ("succeeded", STEPS)
    assert job["metrics"]["ap"] is not None
    model = http.get(f"/v1/models/{job['model_id']}").json()
    assert (model["version"], model["label_map"]) == (1, {"1": "raccoon"})
    image_path = RACCOON / "images" / "raccoon-1.jpg"
    width, height = Image.open(image_path).size
    predicted = http.post(
        f"/v1/models/{model['id']}/predict",
        files={"file": (image_path.name, image_path.read_bytes(), "image/jpeg")},
        data={"score_threshold": "0.0", "max_detections": str(MAX_BOXES)},
    )
    assert predicted.status_code == 200, predicted.text
    detections = predicted.json()
    assert 0 < len(detections) <= MAX_BOXES
    for detection in detections:
        xmin, ymin, xmax, ymax = detection["box"]
        assert 0 <= xmin <= xmax <= width
        assert 0 <= ymin <= ymax <= height
        assert detection["label"] == "raccoon"


# --- the dashboard in a browser --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium()), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Screenshots:
    """Screenshots of each page under the test's output dir, also copied to $EFFDET_SCREENSHOT_DIR when set."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.copy_to = Path(os.environ["EFFDET_SCREENSHOT_DIR"]) if os.environ.get("EFFDET_SCREENSHOT_DIR") else None

    def take(self, page: Page, name: str, full_page: bool = True) -> None:
        path = self.folder / f"dashboard-{name}.png"
        page.screenshot(path=path, full_page=full_page)
        if self.copy_to is not None:
            self.copy_to.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, self.copy_to / path.name)


def _raccoon_subset(folder: Path) -> Path:
    """A zip of the first NUM_IMAGES raccoon images and their VOC annotations, the first with an extra box whose
    xmax is left of its xmin (a problem the dataset page must list)."""
    path = folder / f"{SUBSET}.zip"
    images = sorted((RACCOON / "images").glob("*.jpg"))[:NUM_IMAGES]
    with zipfile.ZipFile(path, "w") as archive:
        for index, image in enumerate(images):
            annotation = (RACCOON / "annotations" / f"{image.stem}.xml").read_text()
            if index == 0:
                annotation = annotation.replace("</annotation>", f"{DEGENERATE_BOX}</annotation>")
            archive.write(image, f"{SUBSET}/images/{image.name}")
            archive.writestr(f"{SUBSET}/annotations/{image.stem}.xml", annotation)
    return path


def _enter_key(page: Page, key: str) -> None:
    page.fill("#key-form input[name=key]", key)
    page.click("#key-form button[type=submit]")


def _sign_in(page: Page, url: str, shots: Screenshots) -> None:
    page.goto(url)
    expect(page.locator("#key-dialog")).to_be_visible()
    _enter_key(page, "not-the-key")
    expect(page.locator("#key-error")).to_contain_text("not valid")
    shots.take(page, "api-key", full_page=False)
    _enter_key(page, API_KEY)
    expect(page.locator("#key-dialog")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('effdet-api-key')") == API_KEY


def _upload_and_inspect(page: Page, dataset_zip: Path, shots: Screenshots) -> str:
    """Upload through the form, then open the dataset's page; returns the dataset's id."""
    form = page.locator("#upload-form")
    form.locator("input[name=file]").set_input_files(dataset_zip)
    form.locator("input[name=name]").fill(SUBSET)
    form.locator("input[name=val_fraction]").fill("0.25")
    form.locator("button[type=submit]").click()
    row = page.locator("#dataset-list tbody tr", has_text=SUBSET)
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "ready", timeout=120_000)
    expect(row).to_contain_text(str(NUM_IMAGES))
    shots.take(page, "datasets")

    row.locator("a").click()
    page.wait_for_url("**/#/datasets/*")
    expect(page.locator("#histograms .chart canvas")).to_have_count(5)
    expect(page.locator("#class-bars")).to_contain_text("raccoon")
    expect(page.locator("#anchors")).to_contain_text("suggested")
    expect(page.locator("#anchors")).to_contain_text("aspect_ratios")
    expect(page.locator("#problems")).to_contain_text("degenerate_box")
    problem_tile = page.locator("#gallery .tile.has-problems").first  # the gallery puts it first
    expect(problem_tile.locator("img")).to_be_visible()
    problem_tile.click()
    expect(page.locator("#image-problems")).to_contain_text("degenerate_box")
    expect(page.locator("#image-dialog img")).to_be_visible()
    page.locator("#image-dialog button", has_text="Close").click()
    expect(page.locator("#image-dialog")).to_be_hidden()
    shots.take(page, "dataset")
    return page.url.rsplit("/", 1)[1]


def _submit_job(page: Page, dataset_id: str, shots: Screenshots) -> str:
    """Bad YAML is reported under its field; the fixed form starts the job. Returns the job's id."""
    page.get_by_text("Train a model on it").click()
    form = page.locator("#job-form")
    expect(form.locator("select[name=dataset_id]")).to_have_value(dataset_id)
    form.locator("select[name=model]").select_option("efficientdet-d0")
    form.locator("input[name=num_steps]").fill(str(STEPS))
    form.locator("input[name=batch_size]").fill("2")
    yaml_field = form.locator("textarea[name=hparams_yaml]")
    yaml_field.fill("image_size: 100\nlearning_rte: 0.1\n")
    form.locator("button[type=submit]").click()
    problems = form.locator('[data-error-for="hparams_yaml"]')
    expect(problems).to_contain_text("learning_rte")
    expect(problems).to_contain_text("learning_rate")  # the "did you mean"
    expect(problems).to_contain_text("128")  # the nearest valid image size
    expect(yaml_field).to_have_class("invalid")
    assert page.url.split("#")[1].startswith("/jobs?"), "a rejected job must not leave the form"
    shots.take(page, "job-form-errors")

    yaml_field.fill(JOB_HPARAMS)
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/#/jobs/*")
    return page.url.rsplit("/", 1)[1]


def _follow_job(page: Page, shots: Screenshots) -> None:
    expect(page.locator("[data-status]").first).to_have_attribute("data-status", "succeeded", timeout=JOB_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#job-metrics #pr-chart canvas') !== null")
    seen = page.evaluate("window.progressSeen")
    assert seen == sorted(seen), seen
    assert seen[-1] == STEPS, seen
    assert any(0 < value < STEPS for value in seen), f"the bar jumped straight to the end: {seen}"
    expect(page.locator("#job-progress")).to_have_attribute("max", str(STEPS))
    figures = page.locator("#job-figures")
    for text in (f"step {STEPS} / {STEPS}", "images/s", "ETA", "loss"):
        expect(figures).to_contain_text(text)
    assert int(page.locator("#loss-chart").get_attribute("data-points") or 0) >= 2
    assert int(page.locator("#lr-chart").get_attribute("data-points") or 0) >= 2
    expect(page.locator("#class-metrics")).to_contain_text("raccoon")
    assert int(page.locator("#pr-chart").get_attribute("data-points") or 0) > 0
    expect(page.locator("#job-log")).to_contain_text("succeeded")
    expect(page.locator("#cancel-job")).to_be_hidden()
    shots.take(page, "job")


def _evaluate_in_dashboard(page: Page, dataset_id: str, shots: Screenshots) -> None:
    """From the model page: evaluate on the job's dataset, watch it end, then compare on that dataset."""
    model_page = page.url
    form = page.locator("#evaluate-form")
    form.locator("select[name=dataset_id]").select_option(dataset_id)
    form.locator("select[name=split]").select_option("all")
    form.locator("input[name=score_threshold]").fill("0.3")
    form.locator("button[type=submit]").click()
    expect(page.locator("#confusion-matrix")).to_be_visible(timeout=180_000)
    expect(page.locator("#evaluation-status")).to_contain_text("succeeded")
    expect(page.locator("#evaluation-counts tbody tr")).to_have_count(1)
    expect(page.locator("#evaluation-pr")).to_have_attribute("data-points", "101")
    expect(page.locator("#evaluation-images svg.drawn").first).to_be_visible()
    expect(page.locator("#evaluation-images svg.drawn image").first).to_be_attached()  # the photo under the boxes
    fixes = page.locator("#label-errors .accept-fix")
    expect(fixes.first).to_be_visible()  # a model of a few steps gets plenty wrong
    shots.take(page, "evaluation")
    page.click("text=compare on this dataset")
    expect(page.locator("#evaluation-comparison tbody tr")).to_have_count(1)
    page.go_back()
    fixes.first.check()
    expect(page.locator("#make-version")).to_contain_text("(1 fixes)")
    page.click("#make-version")
    page.wait_for_function(
        "location.hash.startsWith('#/datasets/') || document.querySelector('#version-error')?.textContent"
    )
    assert page.evaluate("location.hash").startswith("#/datasets/"), page.locator("#version-error").text_content()
    expect(page.locator("#histograms .chart canvas")).to_have_count(5, timeout=120_000)  # the fixed version is ready
    page.goto(model_page)


def _try_model(page: Page, shots: Screenshots) -> None:
    page.click("#model-link")
    page.fill("#score-threshold", "0")
    page.fill("#max-detections", str(MAX_BOXES))
    page.set_input_files("#tryit-file", RACCOON / "images" / "raccoon-1.jpg")
    page.wait_for_function("document.querySelectorAll('#tryit-image rect.box').length > 0", timeout=120_000)
    detections: list[dict[str, Any]] = json.loads(page.locator("#tryit-json").inner_text())
    assert 0 < len(detections) <= MAX_BOXES, "score threshold 0 must give boxes, at most the number asked for"
    assert {d["label"] for d in detections} == {"raccoon"}
    assert page.locator("#tryit-image rect.box").count() == len(detections)
    formats = page.locator("#model-formats tbody tr")
    expect(formats).to_have_count(2)
    expect(formats.first).to_contain_text("saved_model")
    expect(formats.nth(1)).to_contain_text("tflite")
    expect(formats.nth(1)).to_contain_text(" ms")  # scored on val through LiteRT
    expect(page.locator("#model-val-images svg.drawn").first).to_be_visible()  # the job's val images, worst first
    shots.take(page, "model")
    page.evaluate("document.querySelector('#tryit-json').textContent = ''")
    page.select_option("#tryit-runtime", "tflite")  # the network-only TFLite file serves threshold 0 too
    page.wait_for_function(
        "document.querySelector('#tryit-json').textContent.startsWith('[')"
        " || document.querySelector('#tryit-error').textContent",
        timeout=120_000,
    )
    expect(page.locator("#tryit-error")).to_have_text("")
    assert 0 < len(json.loads(page.locator("#tryit-json").inner_text())) <= MAX_BOXES
    page.select_option("#tryit-runtime", "saved_model")
    expect(page.locator("#tryit-error")).to_have_text("")

    with page.expect_download() as download:
        page.locator("a.download", has_text="SavedModel").click()
    names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
    assert any(name.endswith("saved_model.pb") for name in names), names

    page.select_option("#anonymise-how", "pixelate")
    with page.expect_download() as download:
        page.click("#anonymise-download")
    assert download.value.suggested_filename == "raccoon-1.jpg"
    pixelated = Image.open(download.value.path())
    assert (pixelated.format, pixelated.size) == ("JPEG", Image.open(RACCOON / "images" / "raccoon-1.jpg").size)


def _key_lasts_for_the_session(page: Page, browser: Browser, url: str) -> None:
    page.reload()
    expect(page.locator("#model-list, #tryit-file").first).to_be_visible()
    expect(page.locator("#key-dialog")).to_be_hidden()
    fresh = browser.new_context().new_page()
    fresh.goto(url)
    expect(fresh.locator("#key-dialog")).to_be_visible()  # another session is asked again


# --- the journey -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_job_through_client_dashboard_and_http_on_postgres_and_redis(
    tmp_path: Path, production_env: dict[str, str], start_runner: Any, browser: Browser
) -> None:
    runner = start_runner(
        {**production_env, "EFFDET_API_KEYS": json.dumps([API_KEY]), "EFFDET_PROGRESS_INTERVAL_S": "0.2"}
    )
    url = runner.url()
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
    assert httpx.get(f"{url}/v1/datasets", timeout=60).status_code == 401
    cli = Cli(url, runner)
    raccoons = _client_uploads_raccoons(cli, http)

    shots = Screenshots(tmp_path / "screenshots")
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.add_init_script(RECORD_PROGRESS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    _sign_in(page, url, shots)
    subset = _upload_and_inspect(page, _raccoon_subset(tmp_path), shots)
    job_id = _submit_job(page, subset, shots)

    hparams = tmp_path / "hparams.yaml"
    hparams.write_text(JOB_HPARAMS)
    watched, progress = tmp_path / "watch.out", tmp_path / "watch.err"
    with watched.open("w") as out, progress.open("w") as err:
        watch = subprocess.Popen(cli.command("jobs", "watch", job_id), stdout=out, stderr=err)
    try:
        _client_submits_and_cancels(cli, raccoons, hparams)
        _follow_job(page, shots)
        returncode = watch.wait(timeout=120)
    finally:
        watch.kill()
    assert returncode == 0, f"{watched.read_text()}\n{progress.read_text()}\nrunner:\n{runner.tail()}"
    assert "succeeded" in watched.read_text()
    assert f"{STEPS}/{STEPS}" in progress.read_text()  # the progress bar reached the last step

    _try_model(page, shots)
    _evaluate_in_dashboard(page, subset, shots)
    _key_lasts_for_the_session(page, browser, url)
    assert errors == [], errors

    job = cli.json("jobs", "show", job_id)
    assert (job["status"], job["progress"]["step"]) == ("succeeded", STEPS)
    _client_uses_model(cli, job_id, job["model_id"], tmp_path)
    _client_evaluates(cli, job["model_id"], raccoons)
    _http_predicts(http, job_id)

    processes = descendants(runner.process.pid)
    runner.interrupt()
    time.sleep(0.5)
    assert not [pid for pid in processes if alive(pid)], runner.tail()

"""The dashboard at `GET /` in a real headless browser (Debian's chromium driven by Playwright) against the real
service (`effdet-service run`: uvicorn and a Celery worker) with API keys on: the page asks for the key, uploads a
raccoon subset through its form, shows the dataset's statistics, reports bad hyperparameters next to the field,
starts a tiny job, follows its progress to the end, and draws a prediction in the try-it box."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.e2e.conftest import RACCOON, free_port

CHROMIUM = Path("/usr/bin/chromium")
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
API_KEY = "dashboard-test-key"
NUM_IMAGES = 12
STEPS = 4
MAX_BOXES = 5
DEGENERATE_BOX = (
    "<object><name>raccoon</name><bndbox><xmin>300</xmin><ymin>50</ymin><xmax>200</xmax><ymax>150</ymax></bndbox>"
    "</object>"
)
JOB_TIMEOUT_MS = 600_000
RECORD_PROGRESS = """
window.progressSeen = [];
new MutationObserver((changes) => {
  for (const change of changes) {
    if (change.target.id === "job-progress") window.progressSeen.push(Number(change.target.getAttribute("value")));
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
"""
"""Records every value the job page's progress bar takes (installed before the page's own scripts run)."""


def _chromium() -> Path:
    """Debian's chromium, installed with apt-get when missing; the test fails (never skips) without it."""
    if not CHROMIUM.exists():
        subprocess.run(["apt-get", "update"], check=False, timeout=300)
        subprocess.run(["apt-get", "install", "-y", "chromium"], check=False, timeout=600)
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing and `apt-get install -y chromium` did not install it")
    return CHROMIUM


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(_chromium()), args=CHROMIUM_ARGS)
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
    path = folder / "raccoons.zip"
    images = sorted((RACCOON / "images").glob("*.jpg"))[:NUM_IMAGES]
    with zipfile.ZipFile(path, "w") as archive:
        for index, image in enumerate(images):
            annotation = (RACCOON / "annotations" / f"{image.stem}.xml").read_text()
            if index == 0:
                annotation = annotation.replace("</annotation>", f"{DEGENERATE_BOX}</annotation>")
            archive.write(image, f"raccoons/images/{image.name}")
            archive.writestr(f"raccoons/annotations/{image.stem}.xml", annotation)
    return path


def _enter_key(page: Page, key: str) -> None:
    page.fill("#key-form input[name=key]", key)
    page.click("#key-form button[type=submit]")


def _upload_and_inspect(page: Page, dataset_zip: Path, shots: Screenshots) -> None:
    form = page.locator("#upload-form")
    form.locator("input[name=file]").set_input_files(dataset_zip)
    form.locator("input[name=name]").fill("raccoons")
    form.locator("input[name=val_fraction]").fill("0.25")
    form.locator("button[type=submit]").click()
    row = page.locator("#dataset-list tbody tr", has_text="raccoons")
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "ready", timeout=120_000)
    expect(row).to_contain_text(str(NUM_IMAGES))
    shots.take(page, "datasets")

    row.locator("a").click()
    expect(page.locator("#histograms .chart canvas")).to_have_count(5)
    expect(page.locator("#class-bars")).to_contain_text("raccoon")
    expect(page.locator("#anchors")).to_contain_text("suggested")
    expect(page.locator("#anchors")).to_contain_text("aspect_ratios")
    expect(page.locator("#problems")).to_contain_text("degenerate_box")
    shots.take(page, "dataset")


def _submit_job(page: Page, shots: Screenshots) -> None:
    page.get_by_text("Train a model on it").click()
    form = page.locator("#job-form")
    expect(form.locator("select[name=dataset_id]")).to_contain_text("raccoons")
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

    yaml_field.fill("image_size: 128\n")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/#/jobs/*")


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
    shots.take(page, "model")

    with page.expect_download() as download:
        page.locator("a.download", has_text="SavedModel").click()
    names = zipfile.ZipFile(io.BytesIO(Path(download.value.path()).read_bytes())).namelist()
    assert any(name.endswith("saved_model.pb") for name in names), names


@pytest.mark.slow
def test_dashboard_with_api_keys_uploads_trains_follows_and_predicts(
    tmp_path: Path, start_runner: Any, browser: Browser
) -> None:
    runner = start_runner(
        {
            "EFFDET_DATA_DIR": str(tmp_path / "var"),
            "PORT": str(free_port()),
            "EFFDET_API_KEYS": json.dumps([API_KEY]),
            "EFFDET_PROGRESS_INTERVAL_S": "0.2",
        }
    )
    url = runner.url()
    shots = Screenshots(tmp_path / "screenshots")
    context = browser.new_context(viewport={"width": 1280, "height": 860}, accept_downloads=True)
    context.add_init_script(RECORD_PROGRESS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))

    page.goto(url)
    expect(page.locator("#key-dialog")).to_be_visible()
    _enter_key(page, "not-the-key")
    expect(page.locator("#key-error")).to_contain_text("not valid")
    shots.take(page, "api-key", full_page=False)
    _enter_key(page, API_KEY)
    expect(page.locator("#key-dialog")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('effdet-api-key')") == API_KEY

    _upload_and_inspect(page, _raccoon_subset(tmp_path), shots)
    _submit_job(page, shots)
    _follow_job(page, shots)
    _try_model(page, shots)

    page.reload()
    expect(page.locator("#model-list, #tryit-file").first).to_be_visible()
    expect(page.locator("#key-dialog")).to_be_hidden()  # the key lasts for the browser session
    fresh = browser.new_context().new_page()
    fresh.goto(url)
    expect(fresh.locator("#key-dialog")).to_be_visible()  # another session is asked again
    assert errors == [], errors

"""The dashboard merges classes that look like one: Debian's chromium (Playwright) on the app served by uvicorn in
this process (SQLite, conversions run by the worker's code in the test); the dataset page lists the
similar_class_names warning, its button re-labels with the suggested aliases and the page follows the dataset
back to ready with one class; the upload form reports bad class_aliases under the field."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.tables import Dataset, DatasetStatus
from tests.app.conftest import Service, start_service, stop_service
from tests.helpers.browser import chromium
from tests.helpers.browser import served as serve
from tests.helpers.respelled import respelled_raccoon_zip
from worker.convert import run_conversion

playwright_api = pytest.importorskip("playwright.sync_api")
BIG = str(8 * 2**20)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Service, str]]:
    """A SQLite service and the URL where uvicorn serves its app."""
    service = start_service(
        monkeypatch,
        tmp_path / "var",
        None,
        EFFDET_MAX_UPLOAD_BYTES=BIG,
        EFFDET_MAX_UNCOMPRESSED_BYTES=BIG,
        EFFDET_MAX_FILES="100",
    )
    with serve(service.client.app) as url:
        yield service, url
    stop_service(service)


def _wait_status(service: Service, dataset_id: str, status: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while service.row(Dataset, dataset_id).status != status:
        assert time.monotonic() < deadline, f"dataset {dataset_id} never became {status}"
        time.sleep(0.1)


@pytest.mark.slow
def test_dashboard_merges_similar_classes_in_one_click(served: tuple[Service, str], tmp_path: Path) -> None:
    service, url = served
    upload = respelled_raccoon_zip(tmp_path / "raccoon.zip").read_bytes()
    response = service.client.post("/v1/datasets", files={"file": ("raccoon.zip", upload)})
    dataset_id = response.json()["id"]
    run_conversion(dataset_id)
    expect: Any = playwright_api.expect
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium()), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto(f"{url}/#/datasets/{dataset_id}")
        expect(page.locator("#similar-classes")).to_contain_text('"raccoon" (19 boxes) and "Raccoon" (2 boxes)')
        if os.environ.get("EFFDET_SCREENSHOT_DIR"):
            page.screenshot(
                path=Path(os.environ["EFFDET_SCREENSHOT_DIR"]) / "dashboard-similar-classes.png", full_page=True
            )
        page.locator("#merge-classes").click()
        _wait_status(service, dataset_id, DatasetStatus.validating)
        run_conversion(dataset_id)
        expect(page.locator("#class-bars")).to_contain_text("raccoon", timeout=15_000)
        expect(page.locator("#class-bars")).not_to_contain_text("Raccoon")
        expect(page.locator("#similar-classes")).to_have_count(0)
        expect(page.locator("main")).to_contain_text("Raccoon → raccoon")
        relabel = page.locator("#relabel-form")
        expect(relabel.locator("input[name=class_aliases]")).to_have_value('{"Raccoon":"raccoon"}')
        relabel.locator("input[name=label_map]").fill('{"1": ')
        relabel.locator("button[type=submit]").click()
        expect(relabel.locator('[data-error-for="label_map"]')).to_contain_text("not valid JSON")
        relabel.locator("input[name=label_map]").fill('{"0": "raccoon"}')
        relabel.locator("button[type=submit]").click()
        expect(relabel.locator('[data-error-for="label_map"]')).to_contain_text("positive integer")
        assert service.row(Dataset, dataset_id).status == DatasetStatus.ready

        page.goto(f"{url}/#/datasets")
        form = page.locator("#upload-form")
        form.locator("input[name=file]").set_input_files(tmp_path / "raccoon.zip")
        form.locator("input[name=class_aliases]").fill('{"lp": "lp"}')
        form.locator("button[type=submit]").click()
        expect(form.locator('[data-error-for="class_aliases"]')).to_contain_text("to itself")
        browser.close()
    assert service.count(Dataset) == 1

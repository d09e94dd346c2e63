"""`effdet-client jobs submit` and `jobs show` print the warnings the service found when it resolved the job."""

from __future__ import annotations

import json

from tests.app.conftest import Service
from tests.effdet_client.conftest import Cli
from tests.helpers.advice import PLATE_WARNING_AT_320, add_ready_dataset, plate_photos_report


def test_submit_and_show_print_the_small_object_warning(cli: Cli, sqlite_service: Service) -> None:
    dataset_id = add_ready_dataset(sqlite_service, plate_photos_report())
    args = ("--dataset", dataset_id, "--model", "efficientdet-lite0", "--num-steps", 4)
    submitted = cli("jobs", "submit", *args)
    assert submitted.exit_code == 0, submitted.output
    assert f"warning: {PLATE_WARNING_AT_320}" in submitted.stdout
    job_id = submitted.stdout.split()[1]  # "job <id> (efficientdet-lite0 on dataset ...)"
    assert f"warning: {PLATE_WARNING_AT_320}" in cli("jobs", "show", job_id).stdout
    assert json.loads(cli("jobs", "show", job_id, "--json").stdout)["warnings"] == [PLATE_WARNING_AT_320]

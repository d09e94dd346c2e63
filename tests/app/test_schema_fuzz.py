"""Schemathesis against the app's own OpenAPI schema, in process: no 5xx, every answer as the schema declares.

Runs on SQLite and PostgreSQL, with auth off and with API keys on (requests with the key, and without it).
Seeded rows (a ready dataset, a finished job, a model whose files are absent) give the fuzzer real ids to hit
besides random ones; the job is finished so that `GET /v1/jobs/{id}/events` (follow=true by default) ends
instead of streaming forever, and the model has no SavedModel so that predict answers 404 without loading
TensorFlow (prediction with a real model is tested in test_models_predict.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import positive_data_acceptance

from app.auth import static_owner
from core.tables import JobStatus

API_KEY = "fuzz-key"
MAX_EXAMPLES = 5
"""Generated requests per operation and mode (schema-valid, schema-violating); derandomized, so each run sends the
same requests and the suite's time stays bounded."""


@dataclass
class Target:
    """A running service under fuzzing: its schema, the ids of its seeded rows, and its API key (if on)."""

    schema: Any
    seeded: dict[str, str]
    api_key: str | None


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["open", "keys"])
def target(request: pytest.FixtureRequest, backend: str, make_service: Any, tmp_path: Path) -> Target:
    """A fresh service (SQLite or PostgreSQL, auth off or on) with one row of each kind seeded."""
    url = request.getfixturevalue("pg_schema") if backend == "postgresql" else None
    key = API_KEY if request.param == "keys" else None
    service = make_service(url, **({"EFFDET_API_KEYS": f'["{key}"]'} if key else {}))
    owner = static_owner(key) if key else None
    dataset = service.dataset(owner=owner)
    job = service.job(dataset, JobStatus.succeeded, owner=owner)
    model = service.model(job, tmp_path / "no-such-model", owner=owner)
    schema = schemathesis.openapi.from_asgi("/openapi.json", service.client.app)
    return Target(schema, {"dataset_id": dataset, "job_id": job, "model_id": model}, key)


SEMANTIC = {
    "POST /v1/datasets": "the file must be a zip of a dataset, which a schema cannot say; random bytes are a 422",
    "POST /v1/jobs": "the dataset, variant and hyperparameters named must exist; each that does not is in the 422",
    "PATCH /v1/datasets/{dataset_id}": "aliases may not name themselves or chain, label map ids are integers from 1",
    "POST /v1/models/{model_id}/evaluations": "the dataset must exist and its classes be the model's; the 422 says",
    "POST /v1/datasets/{dataset_id}/versions": "each fix must name a box of its image and a class of the dataset",
    "POST /v1/keys": "only an admin key makes keys (a server with keys off answers 403), and names are unique (409)",
    "POST /v1/webhooks": "the URL must be http(s) and resolve to a public address; others are a 422",
}
"""Operations whose schema-valid requests may still be refused with a 422, and why; the positive-data check
is left out for them (every other check still runs; real uploads and jobs are accepted in their own tests)."""


def _fuzz(operation: Any, mode: GenerationMode, target: Target) -> str | None:
    """Run one operation's generated cases through every schemathesis check; the failure text, or None."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode), use_seeded=st.booleans(), send_key=st.booleans())
    def run(case: Any, use_seeded: bool, send_key: bool) -> None:
        if use_seeded:
            seeded = {name: value for name, value in target.seeded.items() if name in case.path_parameters}
            case.path_parameters = {**case.path_parameters, **seeded}
        headers = {"Authorization": f"Bearer {target.api_key}"} if target.api_key and send_key else None
        excluded = [positive_data_acceptance] if operation.label in SEMANTIC else []
        case.call_and_validate(headers=headers, excluded_checks=excluded)

    try:
        run()
    except Unsatisfiable:
        return None  # nothing to negate: no parameters, or only free-form strings (ids)
    except (Exception, BaseExceptionGroup) as err:
        return f"{operation.label} ({mode.value}): {err}"
    return None


def test_api_answers_as_its_schema_says(target: Target) -> None:
    failures = []
    for result in target.schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _fuzz(operation, mode, target)
            if failure:
                failures.append(failure)
    assert not failures, "\n\n".join(failures)


def test_every_json_body_documents_the_400_of_an_unreadable_body(sqlite_service: Any) -> None:
    """A body that is not JSON (e.g. not UTF-8) is a 400 on every operation that takes one; the fuzz above finds
    an undocumented one only when its random bytes happen to hit it, so every operation is checked here."""
    spec = sqlite_service.client.app.openapi()
    missing = [
        f"{method.upper()} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "application/json" in operation.get("requestBody", {}).get("content", {})
        and "400" not in operation["responses"]
    ]
    assert missing == []

"""What the client raises: the API's 4xx/5xx answer with its `detail`, or a service it cannot reach."""

from __future__ import annotations

import json
from typing import Any


class ClientError(Exception):
    """Something went wrong talking to the service; the message says what to do."""


class ServiceUnreachableError(ClientError):
    """No answer from the service at that URL (not running, wrong URL, network down)."""


class ApiError(ClientError):
    """The service answered with an error status; `detail` is its message (a string, or a list of problems)."""

    def __init__(self, status_code: int, detail: Any, method: str, path: str) -> None:
        self.status_code, self.detail, self.method, self.path = status_code, detail, method, path
        super().__init__(f"{method} {path} -> {status_code}: {describe_detail(detail)}")

    @property
    def problems(self) -> list[str]:
        """The detail as one line per problem (a 422 lists every problem of a submission)."""
        if isinstance(self.detail, list):
            return [_problem_line(item) for item in self.detail]
        return [describe_detail(self.detail)]


def _problem_line(item: Any) -> str:
    """'field: message' for FastAPI's {loc, msg} problems; JSON for anything else."""
    if isinstance(item, dict) and "msg" in item:
        location = [str(part) for part in item.get("loc", []) if part not in ("body", "query", "path")]
        return f"{'.'.join(location)}: {item['msg']}" if location else str(item["msg"])
    return item if isinstance(item, str) else json.dumps(item)


def describe_detail(detail: Any) -> str:
    """A one-line rendering of an error detail."""
    if isinstance(detail, list):
        return "; ".join(_problem_line(item) for item in detail)
    return detail if isinstance(detail, str) else json.dumps(detail)

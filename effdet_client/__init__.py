"""A Python client for the effdet-service HTTP API, and the `effdet-client` command built on it."""

from effdet_client.client import Client
from effdet_client.errors import ApiError, ClientError, ServiceUnreachableError
from effdet_client.models import JobSubmission

__all__ = ["ApiError", "Client", "ClientError", "JobSubmission", "ServiceUnreachableError"]

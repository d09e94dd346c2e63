"""Celery tasks that drive `effdet` for the service and record job state. Built by the service issue."""

"""Celery tasks that drive `effdet` for the service: dataset conversion and training jobs, with leases,
progress and recovery of dead workers' work. Records state through `core`, never imports `app`."""

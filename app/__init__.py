"""The HTTP layer (FastAPI): datasets, jobs, models, predict, the dashboard. Never imports TensorFlow at import
time, nor `worker`: state changes and the job queue go through `core`."""

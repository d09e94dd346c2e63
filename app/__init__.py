"""The HTTP layer (FastAPI): datasets, jobs, models, predict. Never imports TensorFlow at import time.

Built by the service issue; empty until then.
"""

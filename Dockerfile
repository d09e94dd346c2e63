# effdet-service image: the API (default command) and the Celery worker (see docker-compose.yml) from one build.
#   API / CPU image:  docker build -t effdet-service .
#   GPU worker image: docker build -t effdet-service-gpu --build-arg TENSORFLOW_EXTRA=and-cuda .
#     (TensorFlow's pip CUDA libraries on the slim base: the host needs only the NVIDIA driver and the
#     container toolkit.) BASE_IMAGE swaps the base, e.g. a CUDA image that provides python3.11.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TENSORFLOW_EXTRA=""
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TF_CPP_MIN_LOG_LEVEL=2 \
    EFFDET_DATA_DIR=/var/lib/effdet PORT=8000

WORKDIR /srv/effdet
COPY pyproject.toml README.md alembic.ini ./
COPY effdet ./effdet
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
# Editable install: the code and migrations/ stay in /srv/effdet, where core.db finds the Alembic scripts.
RUN python3.11 -m pip install --upgrade pip \
    && python3.11 -m pip install -e . \
    && if [ -n "$TENSORFLOW_EXTRA" ]; then python3.11 -m pip install "tensorflow[$TENSORFLOW_EXTRA]>=2.21,<2.22"; fi \
    && useradd --system --uid 10001 --home-dir /srv/effdet effdet \
    && mkdir -p /var/lib/effdet && chown effdet:effdet /var/lib/effdet

USER effdet
VOLUME ["/var/lib/effdet"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s \
    CMD python3.11 -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/healthz', timeout=4)"

# The API (migrates the database at start). The worker runs instead:
#   celery -A worker.celery_app worker --pool=prefork --concurrency=1 --loglevel=INFO
CMD ["sh", "-c", "exec uvicorn app.main:create_app --factory --host 0.0.0.0 --port ${PORT}"]

# effdet-service image: the effdet library and CLI today; the API and worker entry points are added by the
# service issue. CPU TensorFlow by default; a GPU worker image swaps the base for a CUDA one.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 EFFDET_DATA_DIR=/var/lib/effdet
WORKDIR /srv/effdet
COPY pyproject.toml README.md ./
COPY effdet ./effdet
COPY app ./app
COPY worker ./worker
RUN pip install --no-cache-dir . && useradd --system --home /srv/effdet effdet \
    && mkdir -p /var/lib/effdet && chown effdet /var/lib/effdet
USER effdet
VOLUME ["/var/lib/effdet"]
ENTRYPOINT ["effdet"]
CMD ["--help"]

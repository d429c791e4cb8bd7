# Forkview: a slim, non-root image. `forkview start` waits for the database, migrates and
# serves (uvicorn, FORKVIEW_WORKERS processes). State (SQLite, collected static files) in /data.
#   docker build -t forkview .   ·   docker compose up   (compose.yaml: + PostgreSQL + Redis)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FORKVIEW_DATA_DIR=/data \
    FORKVIEW_HOST=0.0.0.0 \
    FORKVIEW_PORT=8000

RUN useradd --create-home --uid 10001 forkview \
    && mkdir /data && chown forkview:forkview /data

COPY . /tmp/forkview
# The pinned versions CI tests (requirements.lock), not whatever is newest today.
RUN pip install --no-cache-dir -c /tmp/forkview/requirements.lock /tmp/forkview \
    && rm -rf /tmp/forkview

USER forkview
WORKDIR /home/forkview
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]
ENTRYPOINT ["forkview"]
CMD ["start"]

# A container image that serves a worker with `tcpworkers serve`.
#
#   docker build -t tcpworkers-app .                                   # serves examples/raw_tcp_worker.py
#   docker build -t my-app --build-arg APP_DIR=path/to/app --build-arg WORKER=worker.py .
#   docker run --rm -p 8080:8080 tcpworkers-app
#
# APP_DIR is copied to /app (with its tcpworkers.toml, if any); WORKER is relative to it.
# See docs/deployment.md.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# tcpworkers itself, from this source tree.
WORKDIR /build
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install . && rm -rf /build

# The application: the worker, its tcpworkers.toml and any modules next to it. Install its own
# dependencies (asyncpg, redis, ...) in a derived image or add a requirements step here.
ARG APP_DIR=examples
ARG WORKER=raw_tcp_worker.py
WORKDIR /app
COPY ${APP_DIR}/ ./
ENV APP_WORKER=${WORKER}

# Run as an unprivileged user; the server needs no write access.
RUN useradd --system --no-create-home --uid 10001 worker
USER worker

EXPOSE 8080
# `serve` binds 127.0.0.1 unless told otherwise: in a container it must listen on every
# interface. Exec form, so tcpworkers is PID 1 and receives SIGTERM itself (graceful shutdown:
# in-flight requests finish within [server] shutdown_timeout, 30 s by default).
CMD ["sh", "-c", "exec tcpworkers serve \"$APP_WORKER\" --host 0.0.0.0 --port 8080"]

# Multi-stage: build a wheel-installed virtualenv, then copy it into a slim runtime image.
# Torch is the CPU wheel pinned in pyproject.toml; for GPU workers build from a CUDA base image and
# install the matching torch wheel first (see docker-compose.yml's worker GPU reservation).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY dgm dgm
COPY service service
COPY worker worker
COPY benchmarks benchmarks
RUN pip install --extra-index-url https://download.pytorch.org/whl/cpu .

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 1000 dgm && mkdir -p /data/artifacts && chown -R dgm /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DGM_DATA_DIR=/data DGM_ARTIFACT_DIR=/data/artifacts
USER dgm
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# The API; `dgm migrate` runs first so the schema is current. Workers override the command.
CMD ["sh", "-c", "dgm migrate && dgm serve --host 0.0.0.0 --port 8000 --no-worker"]

# One Dockerfile, two images; the build argument TORCH_INDEX_URL picks the torch build:
#   CPU (the default, what `docker compose up` builds): https://download.pytorch.org/whl/cpu
#   GPU workers (docker-compose.gpu.yml): https://pypi.org/simple, whose Linux torch wheels are CUDA
#   builds that carry the CUDA libraries; a GPU host needs only the NVIDIA driver and container toolkit.
# Multi-stage: torch and then the project go into a virtualenv, which is copied into a slim runtime.
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the chosen index: the project's range (torch>=2.3,<3) then keeps this build.
RUN pip install --index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple "torch==$TORCH_VERSION"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core core
COPY dgm dgm
COPY service service
COPY worker worker
COPY cli cli
COPY benchmarks benchmarks
RUN pip install . && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

FROM python:${PYTHON_VERSION}-slim AS runtime
RUN useradd --create-home --uid 1000 dgm && mkdir -p /data/artifacts && chown -R dgm /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 DGM_DATA_DIR=/data DGM_ARTIFACT_DIR=/data/artifacts
USER dgm
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"
# The API; `dgm migrate` (the Alembic scripts ship inside the package) runs first so the schema is
# current. Workers override the command.
CMD ["sh", "-c", "dgm migrate && dgm serve --host 0.0.0.0 --port 8000 --no-worker"]

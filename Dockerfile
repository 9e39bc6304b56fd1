# leadpulse: one image for the worker, the trainer, the publisher and the examples.
#   docker build -t leadpulse:local .
#   docker run --rm -e KAFKA_BOOTSTRAP=kafka:9092 -p 6066:6066 leadpulse:local worker
FROM python:3.11-slim

# torch comes from the CPU index: the default index's Linux wheel pulls the CUDA stack (GBs).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# libgomp1: LightGBM's wheel links against the system OpenMP runtime.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgomp1 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# --no-deps: torch's own dependencies come from the registry below, at the pinned versions.
RUN pip install --no-deps --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"

# Dependencies first (cached while only the code changes): the same pins as ./scripts/*.sh.
COPY pyproject.toml constraints.txt README.md ./
COPY leadpulse ./leadpulse
COPY schemas ./schemas
COPY simulator ./simulator
COPY graph_store ./graph_store
COPY model ./model
COPY stream ./stream
COPY bench ./bench
RUN pip install -c constraints.txt . \
 && python -c "import torch, leadpulse.stream.cli; print('torch', torch.__version__)"
COPY examples ./examples

RUN useradd --create-home --uid 10001 leadpulse \
 && mkdir -p /data /models \
 && chown leadpulse:leadpulse /data /models
USER leadpulse

# In a container the HTTP views must listen on every interface, not loopback.
ENV LEADPULSE_DATA_DIR=/data \
    LEADPULSE_MODEL_DIR=/models \
    LEADPULSE_WEB_HOST=0.0.0.0 \
    LEADPULSE_WEB_PORT=6066
EXPOSE 6066
# liveness only: readiness (/readyz) is the orchestrator's probe, see docs/operating.md
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=4 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6066/healthz', timeout=3)"
VOLUME ["/data", "/models"]

ENTRYPOINT ["leadpulse"]
CMD ["worker"]

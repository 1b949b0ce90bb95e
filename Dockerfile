# syntax=docker/dockerfile:1
#
# Magnetar images, all from this one file:
#
#   runtime           the `magnetar` CLI on python:3.11-slim, non-root: the gateway
#                     (`magnetar gateway serve`), the migrations Job (`magnetar db upgrade`)
#                     and the functions-deploy Job (`magnetar functions deploy --all`).
#                       docker build --target runtime -t magnetar:0.1.0 .
#   functions-worker  the official Apache Pulsar image plus the magnetar distribution in its
#                     python3, for the brokers / functions workers / function pods that run
#                     the dedupe, enrich and materialize functions (docs/kubernetes.md).
#                       docker build --target functions-worker -t magnetar-pulsar:4.0.8-0.1.0 .
#   wheel             just the magnetar wheel, to install into an existing worker's python3.
#                       docker build --target wheel --output type=local,dest=dist .
#
# Reproducible: the wheel is built without build isolation by pinned build tools, and every
# timestamp in it (and in the function package) comes from SOURCE_DATE_EPOCH. Release builds
# pass the commit time and pin the base images by digest:
#   docker build --build-arg SOURCE_DATE_EPOCH="$(git log -1 --format=%ct)" \
#     --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> ...
# Building the same commit twice then yields byte-identical wheels and function packages.

ARG PYTHON_IMAGE=python:3.11-slim
ARG PULSAR_IMAGE=apachepulsar/pulsar:4.0.8

# --- build: the magnetar wheel and wheels of all its dependencies -------------------------
FROM ${PYTHON_IMAGE} AS build
# 2024-01-01T00:00:00Z unless the build passes the commit time.
ARG SOURCE_DATE_EPOCH=1704067200
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m pip install "build==1.6.1" "setuptools==84.2.1" "wheel==0.48.0"
WORKDIR /src
# Only what the distribution is made of; .dockerignore keeps everything else (local state,
# credentials, virtualenvs) out of the build context in the first place.
COPY pyproject.toml README.md ./
COPY magnetar/ magnetar/
COPY gateway/ gateway/
COPY functions/ functions/
COPY tenants/ tenants/
COPY migrations/ migrations/
COPY bench/ bench/
COPY cli/ cli/
# With the `functions` extra: the gateway's tenant onboarding creates each tenant's function
# state namespace through the BookKeeper client that extra brings.
RUN python -m build --wheel --no-isolation --outdir /dist . \
    && set -- /dist/magnetar-*.whl \
    && python -m pip wheel --wheel-dir /wheels "$1[functions]"

# --- venv: magnetar installed into a self-contained virtualenv ----------------------------
FROM ${PYTHON_IMAGE} AS venv
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY --from=build /wheels /wheels
# Offline from the wheels built above: the image holds exactly what the build resolved.
RUN python -m venv /opt/magnetar \
    && /opt/magnetar/bin/pip install --no-index --find-links /wheels "magnetar[functions]"

# --- function-package: the package the functions worker receives -------------------------
FROM venv AS function-package
ARG SOURCE_DATE_EPOCH=1704067200
ENV SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH} \
    MAGNETAR_HOME=/out
WORKDIR /out
RUN /opt/magnetar/bin/magnetar functions package

# --- wheel: export stage --------------------------------------------------------------------
FROM scratch AS wheel
COPY --from=build /dist/ /

# --- functions-worker: Pulsar with magnetar in its python3 -------------------------------
# Pulsar's process runtime starts Python functions with the `python3` on the worker's PATH
# (and overwrites PYTHONPATH); its Kubernetes runtime starts them in pods of this image. So
# the distribution goes into the image's own interpreter, next to pulsar-client.
FROM ${PULSAR_IMAGE} AS functions-worker
USER 0
COPY --from=build /dist/ /tmp/magnetar-dist/
# The constraints keep every package the Pulsar image ships (grpcio, protobuf, pulsar-client:
# its Python instance's stubs depend on them) at its version; an incompatible magnetar
# requirement fails this build instead of a function at run time.
RUN python3 -m pip freeze > /tmp/pulsar-constraints.txt \
    && python3 -m pip install --break-system-packages --no-cache-dir --only-binary :all: \
       --constraint /tmp/pulsar-constraints.txt /tmp/magnetar-dist/magnetar-*.whl \
    && rm -rf /tmp/magnetar-dist /tmp/pulsar-constraints.txt
# Back to the Pulsar image's own non-root user.
USER 10000

# --- runtime: the image the Helm chart runs -----------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="magnetar" \
      org.opencontainers.image.description="Magnetar gateway, migrations and function deployment" \
      org.opencontainers.image.licenses="Apache-2.0"
# A numeric user (10001, matching the chart's runAsUser) so the kubelet can verify runAsNonRoot.
RUN groupadd --system --gid 10001 magnetar \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin magnetar
COPY --from=venv /opt/magnetar /opt/magnetar
COPY --from=function-package /out /opt/magnetar-functions
ENV PATH=/opt/magnetar/bin:${PATH} \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    MAGNETAR_HOME=/tmp/magnetar \
    MAGNETAR_GRPC_HOST=0.0.0.0
# The root filesystem may be read-only (it is in the chart); only /tmp needs to be writable.
WORKDIR /tmp
USER 10001:10001
EXPOSE 50051 9464
# For plain `docker run`: asks the gateway's grpc.health.v1 service. Kubernetes ignores
# HEALTHCHECK; the chart uses native gRPC startup/liveness/readiness probes instead.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, grpc; from grpc_health.v1 import health_pb2 as h, health_pb2_grpc as g; port = os.environ.get('MAGNETAR_GRPC_PORT', '50051'); reply = g.HealthStub(grpc.insecure_channel('127.0.0.1:' + port)).Check(h.HealthCheckRequest(), timeout=3); sys.exit(0 if reply.status == h.HealthCheckResponse.SERVING else 1)"]
ENTRYPOINT ["magnetar"]
CMD ["gateway", "serve"]

# Agent Workbench image: `workbench api|dispatcher|worker|migrate` (see cli/main.py).
#   docker build -t agent-workbench:0.1.0 .
#   docker run --rm -e DATABASE_URL=... -e WORKBENCH_JWT_SECRET=... -p 8000:8000 agent-workbench:0.1.0
# The chart (charts/agent-workbench) runs it as uid 10001 with a read-only root
# filesystem; /tmp and the artifact directory are volumes. Python 3.11: the version CI
# tests with. Needs BuildKit (the default builder) for RUN --mount.

# Build: wheels for the project and every dependency.
FROM python:3.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY api ./api
COPY cli ./cli
COPY console ./console
COPY dispatcher ./dispatcher
COPY lanes ./lanes
COPY metrics ./metrics
COPY ledger ./ledger
COPY worker ./worker
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime: the wheels installed into a slim Python, nothing else.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    WORKBENCH_HOST=0.0.0.0 \
    WORKBENCH_DATA_DIR=/tmp/workbench
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels agent-workbench \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin workbench
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000 9100
ENTRYPOINT ["workbench"]
CMD ["api"]

# syntax=docker/dockerfile:1
# Dockerfile: one image with the three workers, the gateway, the console, orderctl and the
# migrations.
# Which program runs is the container's command (docker-compose.yml, ops/k8s):
#   orderflow-order-created | orderflow-order-status | orderflow-return-requested |
#   orderflow-gateway | orderflow-console | orderctl ...
#
#   docker build -t orderflow:dev .
#   ops/image build        # the same without a Docker engine (podman, buildah)
#
# No Docker engine and no image registry are reachable where this repository
# is developed and tested, yet the image is built and run there:
# ops/image makes the debian:12 and debian:12-slim bases locally with
# mmdebstrap and builds this file with `podman build --isolation chroot
# --pull=never`; the test integration.image (tests/integration/test_image.sh)
# checks its size and non-root user and runs orderctl migrate up and the three
# workers from it against the test stack until an order is CONFIRMED.
# ops/validate-deploy also checks the file offline: hadolint, every file the
# build needs passes .dockerignore, and the runtime packages below cover every
# shared library the binaries link (readelf of a local build, mapped to Debian
# packages with dpkg -S). The package names are Debian 12 (bookworm) ones.

# --- build: compilers and the -dev packages ------------------------------------
FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      gcc libc6-dev cmake ninja-build pkg-config \
      librdkafka-dev libpq-dev libcjson-dev libuv1-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what the build reads (.dockerignore keeps the rest out of the context).
COPY CMakeLists.txt ./
COPY common/ common/
COPY domain/ domain/
COPY workers/ workers/
COPY gateway/ gateway/
COPY console/ console/
COPY tools/ tools/
COPY bench/ bench/
# Tests are not built here (they need cmocka and a stack); -Werror is CI's job.
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DORDERFLOW_TESTS=OFF \
 && cmake --build build \
 && DESTDIR=/out cmake --install build --prefix /usr/local --strip

# --- runtime: only the shared libraries, a non-root user, the programs -----------
FROM debian:12-slim AS runtime
ARG DEBIAN_FRONTEND=noninteractive
# ca-certificates: Kafka TLS (KAFKA_SSL_CA_LOCATION may point elsewhere) and
# PostgreSQL sslmode=verify-full against public CAs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librdkafka1 libpq5 libcjson1 libuv1 libmicrohttpd12 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# A fixed numeric id, so that Kubernetes can verify runAsNonRoot.
RUN groupadd --system --gid 10001 orderflow \
 && useradd --system --uid 10001 --gid orderflow --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin orderflow
COPY --from=build /out/usr/local/bin/ /usr/local/bin/
COPY migrations/ /usr/share/orderflow/migrations/
# orderctl migrate finds the migrations without --dir; the workers serve
# /healthz, /readyz and /metrics on ORDERFLOW_HTTP_PORT.
ENV ORDERFLOW_MIGRATIONS_DIR=/usr/share/orderflow/migrations \
    ORDERFLOW_HTTP_PORT=8080 \
    ORDERFLOW_GRACE_PERIOD=25s
EXPOSE 8080
USER 10001:10001
WORKDIR /
# The image has neither curl nor wget: bash's /dev/tcp sends the request.
# Meaningful for the workers only; orderctl containers (one-shot) disable it.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${ORDERFLOW_HTTP_PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && IFS= read -r -t 4 status <&3 && [[ $status == 'HTTP/1.'[01]' 200 '* ]]"]
# Signals go straight to the program (exec form, no shell in between): the
# workers drain on SIGTERM within ORDERFLOW_GRACE_PERIOD.
CMD ["orderctl", "--help"]

# despool image: pkgpub (publisher) and despooler (worker, lag, dev-broker)
# on Debian 12, built from this repository.
#
#   docker build -t despool:local .
#   docker run --rm despool:local --help          # despooler
#   docker run --rm --entrypoint pkgpub despool:local --help
#
# compose.yaml builds and runs it; docs/DEPLOY.md explains both.
#
# No HEALTHCHECK in the image: it depends on how the worker is run. With
# `despooler run --metrics :9464`, GET /healthz answers 200 or 503;
# compose.yaml shows a check for it with bash's /dev/tcp (no curl needed).

ARG DEBIAN_IMAGE=debian:12-slim

# ---------------------------------------------------------------- build
FROM ${DEBIAN_IMAGE} AS build

# The -dev packages of scripts/deps, without Criterion: the tests are not
# built here (-DBUILD_TESTING=OFF).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      librdkafka-dev libmsgpack-dev libzstd-dev libarchive-dev libssl-dev \
      libmicrohttpd-dev libsystemd-dev libjansson-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF \
 && cmake --build /build -j"$(nproc)" --target despooler pkgpub

# ---------------------------------------------------------------- runtime
FROM ${DEBIAN_IMAGE}

LABEL org.opencontainers.image.title="despool" \
      org.opencontainers.image.description="Package updates as Kafka events: pkgpub publishes, despooler extracts and atomically switches them in a site's library"

# Exactly the libraries the two binaries link (readelf -d: librdkafka.so.1,
# libmsgpackc.so.2, libzstd.so.1, libarchive.so.13, libcrypto.so.3,
# libmicrohttpd.so.12, libsystemd.so.0: sd_notify, a no-op in a container,
# libjansson.so.4: --json, libz.so.1: the status page's gzip),
# plus ca-certificates so that TLS to a real cluster can verify the broker
# with the system CAs.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      librdkafka1 libmsgpackc2 libzstd1 libarchive13 libssl3 libmicrohttpd12 libsystemd0 \
      libjansson4 zlib1g \
      ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid, so a bind-mounted library can be chowned to it on the
# host (chown -R 10001:10001 DIR). The two directories exist in the image
# so that a fresh named volume mounted on them takes their owner:
#   /var/lib/despool     a site's content library (despooler run --library)
#   /var/spool/pkgpub    pkgpub's spool ($TMPDIR, see compose.yaml)
RUN groupadd --gid 10001 despool \
 && useradd --uid 10001 --gid despool --no-create-home \
      --home-dir /var/lib/despool --shell /usr/sbin/nologin despool \
 && install -d -o despool -g despool -m 0755 /var/lib/despool \
 && install -d -o despool -g despool -m 0700 /var/spool/pkgpub

COPY --from=build /build/despooler /build/pkgpub /usr/local/bin/

# Fails the build if a runtime library is missing.
RUN despooler --help >/dev/null && pkgpub --help >/dev/null

USER despool
WORKDIR /var/lib/despool
ENTRYPOINT ["despooler"]
CMD ["--help"]

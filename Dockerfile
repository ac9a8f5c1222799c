# syntax=docker/dockerfile:1
# SPDX-License-Identifier: Apache-2.0
# One image with loupe-agent, loupe-controller and loupectl (charts/loupe runs all three from it).
#
#   docker build -t REGISTRY/loupe:0.1.0 --build-arg VERSION=0.1.0 \
#     --build-arg REVISION=$(git rev-parse HEAD) .
#
# The build stage is the tested build, step for step: Debian 12, scripts/install-deps (the one
# package list), then `make build` (the CMake build `make test` runs). The runtime stage gets
# only the shared libraries the binaries need; tests/packaging checks both against the build
# (`packaging_dockerfile`).

ARG BUILD_IMAGE=debian:12
ARG RUNTIME_IMAGE=debian:12-slim

FROM ${BUILD_IMAGE} AS build
# helm and kubectl are for the chart's checks, not the image.
ENV LOUPE_INSTALL_HELM=0
WORKDIR /src
# The package list alone first: this layer stays cached until scripts/install-deps changes.
COPY scripts/install-deps scripts/install-helm scripts/
RUN scripts/install-deps && rm -rf /var/lib/apt/lists/*
COPY . .
RUN make build BUILD=/build

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=unknown
LABEL org.opencontainers.image.title="loupe" \
      org.opencontainers.image.description="Kubernetes pod traffic inspector with eBPF: loupe-agent, loupe-controller, loupectl" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="debian:12-slim"
# Runtime counterparts of the -dev packages of scripts/install-deps that the binaries link
# (their NEEDED entries; libc6 is in the base image). packaging_dockerfile keeps this exact.
RUN apt-get update -q \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends libbpf1 libgrpc29 libjson-c5 libmicrohttpd12 libmnl0 libpcap0.8 libprotobuf-c1 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /build/bin/loupe-agent /build/bin/loupe-controller /build/bin/loupectl /usr/bin/
# The controller and loupectl run as this user; the agent's pod sets runAsUser 0 and keeps
# only the capabilities it needs (charts/loupe/templates/agent-daemonset.yaml).
RUN groupadd --system --gid 65532 loupe \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin loupe
USER 65532:65532
CMD ["/usr/bin/loupectl", "--help"]

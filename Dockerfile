# syntax=docker/dockerfile:1

# A glibc build on Debian 12 run on distroless cc-debian12, rather than a musl
# build on scratch: the build stage needs no extra packages (no musl-tools for
# ring's C code), the binary links against the same glibc 2.36 that the
# runtime image ships, musl's allocator is slow under Tokio's worker threads,
# and distroless still brings CA certificates, tzdata and the nonroot user
# (65532) while having no shell or package manager.
#
# Base images are pinned by tag (for people and update bots) and by digest
# (for reproducible builds); bump both together.

FROM rust:1.95.0-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS chef
# cargo-chef reduces the manifests to a recipe, so dependencies compile in a
# layer that is rebuilt only when Cargo.toml or Cargo.lock change.
RUN cargo install cargo-chef --locked --version 0.1.78
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# The revision shown by flexcloud_exporter_build_info (the build sees no .git).
ARG REVISION=unknown
ENV FLEXCLOUD_REVISION=${REVISION}
# The same command CI runs, so a green CI means this step builds.
RUN cargo build --release --locked

FROM gcr.io/distroless/cc-debian12:nonroot@sha256:9dac0a79194e45a7da0158a9c6da57b217585af0786db3845d1f0ec1a0dd182f
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="flexcloud-exporter" \
      org.opencontainers.image.description="Prometheus exporter for the Hostway FlexCloud image API" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=build /src/target/release/flexcloud-exporter /usr/local/bin/flexcloud-exporter
# The nonroot user of distroless, by number so that Kubernetes' runAsNonRoot
# can check it without reading /etc/passwd.
USER 65532:65532
# Every mode listens on all interfaces of the container, --demo included (it listens on
# loopback by default, which nothing outside a container could reach).
ENV FLEXCLOUD_LISTEN_ADDRESS=0.0.0.0:9819
EXPOSE 9819
# The binary checks itself: the image has no shell or curl. The URL follows the
# default FLEXCLOUD_LISTEN_ADDRESS; override the health check when changing it.
HEALTHCHECK --interval=30s --timeout=6s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/flexcloud-exporter", "--health-check", "http://127.0.0.1:9819/-/healthy"]
ENTRYPOINT ["/usr/local/bin/flexcloud-exporter"]

# Stratus: one image with both binaries, the broker (/usr/local/bin/stratus, the
# entrypoint) and the Kubernetes operator (/usr/local/bin/stratus-operator).
#
#   podman build -t stratus:dev .                      # compiles in the builder image
#   podman build -t stratus:dev --build-arg BINARIES=prebuilt \
#       --build-arg RUNTIME_IMAGE=localhost/stratus-base:local .   # binaries from target/release
#
# The runtime is distroless-like: glibc, CA certificates, a non-root user (65532), no
# shell. Reproducible: the build is --locked, paths are remapped, and SOURCE_DATE_EPOCH
# fixes timestamps (podman build --timestamp / --source-date-epoch). See docs/kubernetes.md.

ARG BUILDER_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# build: compile in BUILDER_IMAGE. prebuilt: take target/$PROFILE/{stratus,stratus-operator}.
ARG BINARIES=build
ARG PROFILE=release

FROM ${BUILDER_IMAGE} AS build
# aws-lc-sys (rustls' crypto) builds with CMake where its C builder does not cover the target.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ENV CARGO_INCREMENTAL=0 \
    RUSTFLAGS="--remap-path-prefix=/src=. --remap-path-prefix=/usr/local/cargo=cargo"
RUN cargo build --release --locked -p stratus -p stratus-operator \
    && mkdir -p /out \
    && cp target/release/stratus target/release/stratus-operator /out/

FROM scratch AS prebuilt
ARG PROFILE
COPY target/${PROFILE}/stratus target/${PROFILE}/stratus-operator /out/

FROM ${BINARIES} AS binaries

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="stratus" \
      org.opencontainers.image.description="A Kafka-compatible broker whose log lives in object storage, and its Kubernetes operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/stratus/stratus"
COPY --from=binaries /out/stratus /out/stratus-operator /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/stratus
# Kafka, the HTTP endpoint (/metrics, /livez, /readyz) and the admin API.
EXPOSE 9092 9644 9645
# On Kubernetes the operator passes --config; alone, the broker listens on every address.
ENTRYPOINT ["/usr/local/bin/stratus"]
CMD ["--data-dir", "/var/lib/stratus", "--listeners", "PLAINTEXT://0.0.0.0:9092", "--set", "http.listener=0.0.0.0:9644"]

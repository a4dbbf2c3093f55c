#!/usr/bin/env bash
# Install everything the integration tests need, cached under $STRATUS_CACHE
# (default ~/.cache/stratus). Idempotent: each step is skipped when its output exists.
#   - kcat (Debian package kcat, or kafkacat on older releases), podman (the image test)
#   - a Python venv at $CACHE/venv with confluent-kafka, kafka-python, pytest, cryptography,
#     prometheus-client (its text parser reads /metrics), pyyaml (the chart's alert rules)
#   - Apache Kafka jars (clients, tools, server) at $CACHE/kafka-$KAFKA_VERSION/lib
#   - the franz-go group consumer (tests/clients/go/groupconsumer) built to $CACHE/bin
#   - kafkajs (npm) in $CACHE/node_modules
#   - MinIO (minio) and etcd (etcd, etcdctl) built from Go modules to $CACHE/bin
#     (start them with scripts/run-minio.sh and scripts/run-etcd.sh)
#   - an OpenTelemetry Collector (otelcol: otlp receiver, batch processor, file and debug
#     exporters) built from Go modules (scripts/otelcol-wrapper) to $CACHE/bin
#   - a Kubernetes control plane for the operator tests, built from Go modules to
#     $CACHE/k8s/bin: kube-apiserver, kube-controller-manager, kube-scheduler and kubectl
#     (k8s.io/kubernetes through scripts/k8s-wrapper), KWOK (fake nodes) and Helm
# Works non-interactively (CI=true, no stdin).
set -euo pipefail

CACHE="${STRATUS_CACHE:-$HOME/.cache/stratus}"
# Newest 4.x for which Maven Central serves every artifact we need (kafka-tools 4.4.0 is not served).
KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
SLF4J_VERSION=2.0.17
LOG4J_VERSION=2.25.4
# MinIO publishes no semver tags the module proxy lists; this is the pseudo-version that
# `go list -m github.com/minio/minio@latest` resolved to (master of 2026-02-12).
MINIO_VERSION="${MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
# etcd server + etcdctl; must match the requires in scripts/etcd-wrapper/go.mod (checked below).
ETCD_VERSION=v3.7.3
# OpenTelemetry Collector core (v0.x modules) and contrib release; must match the requires in
# scripts/otelcol-wrapper/go.mod (checked below). Not newer: from v0.162.0 on, the Go module
# proxy serves no otlpencodingextension (a test import of fileexporter), so `go mod tidy` of
# the wrapper fails there.
OTELCOL_VERSION=v0.161.0
export DEBIAN_FRONTEND=noninteractive
mkdir -p "$CACHE"

log() { echo "install-test-deps: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo -n "$@"; else
    log "need root for: $*"; return 1; fi
}

# --- curl (health checks of etcd and MinIO, the test bucket) ----------------------------
if ! command -v curl >/dev/null 2>&1; then
  log "curl: installing from apt"
  as_root apt-get update -qq </dev/null
  as_root apt-get install -y -qq curl </dev/null
fi

# --- kcat -------------------------------------------------------------------
if command -v kcat >/dev/null 2>&1 || command -v kafkacat >/dev/null 2>&1; then
  log "kcat: present"
else
  log "kcat: installing from apt"
  as_root apt-get update -qq </dev/null
  as_root apt-get install -y -qq kcat </dev/null || as_root apt-get install -y -qq kafkacat </dev/null
fi
if ! command -v kcat >/dev/null 2>&1 && command -v kafkacat >/dev/null 2>&1; then
  mkdir -p "$CACHE/bin"
  ln -sf "$(command -v kafkacat)" "$CACHE/bin/kcat"
fi

# --- podman (the image test builds and runs the Dockerfile's image) ---------------------
# runc too: the test runs containers with runc under cgroupfs, which works in sandboxes where
# crun refuses hybrid cgroups.
if command -v podman >/dev/null 2>&1 && command -v runc >/dev/null 2>&1; then
  log "podman: present"
else
  log "podman, runc: installing from apt"
  as_root apt-get update -qq </dev/null
  as_root apt-get install -y -qq podman runc </dev/null
fi

# --- Python venv --------------------------------------------------------------
VENV="$CACHE/venv"
PY_STAMP="$VENV/.stratus-deps-v5"
if [ -f "$PY_STAMP" ]; then
  log "python venv: present ($VENV)"
else
  PYTHON="${PYTHON:-$(command -v python3.11 || command -v python3)}"
  log "python venv: creating with $PYTHON"
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV"; then
    log "python venv: installing python3-venv"
    as_root apt-get update -qq </dev/null
    as_root apt-get install -y -qq python3-venv </dev/null
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
  fi
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip </dev/null
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    'confluent-kafka>=2.6' 'kafka-python>=2.0.3' 'pytest>=8' 'pytest-timeout>=2' lz4 zstandard 'cryptography>=42' 'prometheus-client>=0.20' 'pyyaml>=6' </dev/null
  "$VENV/bin/python" -c 'import confluent_kafka, kafka, pytest, cryptography, prometheus_client, yaml; print("confluent-kafka", confluent_kafka.version(), "librdkafka", confluent_kafka.libversion()[0])'
  touch "$PY_STAMP"
fi

# --- Apache Kafka jars ----------------------------------------------------------
KDIR="$CACHE/kafka-$KAFKA_VERSION"
if [ -f "$KDIR/.complete" ]; then
  log "kafka $KAFKA_VERSION jars: present ($KDIR/lib)"
else
  command -v mvn >/dev/null || { log "mvn not found (apt-get install maven)"; exit 1; }
  command -v java >/dev/null || { log "java not found (apt-get install openjdk-17-jdk-headless)"; exit 1; }
  log "kafka $KAFKA_VERSION jars: fetching with maven"
  rm -rf "$KDIR"
  mkdir -p "$KDIR/build" "$KDIR/lib" "$KDIR/config"
  cat > "$KDIR/build/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.stratus.test</groupId>
  <artifactId>kafka-dist</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-clients</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-server</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-storage</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>$SLF4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-1.2-api</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
POM
  if ! (cd "$KDIR/build" && mvn -B -ntp -Dstyle.color=never -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies \
      -DoutputDirectory="$KDIR/lib" -DincludeScope=runtime </dev/null >"$KDIR/build/mvn.log" 2>&1); then
    tail -40 "$KDIR/build/mvn.log" >&2; log "maven failed"; exit 1
  fi
  # Quiet logging for CLI tools and the reference broker: warnings to stderr only.
  cat > "$KDIR/config/log4j2.properties" <<'LOG'
status = warn
appender.stderr.type = Console
appender.stderr.name = STDERR
appender.stderr.target = SYSTEM_ERR
appender.stderr.layout.type = PatternLayout
appender.stderr.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.stderr.ref = STDERR
LOG
  n=$(ls "$KDIR/lib" | wc -l)
  [ "$n" -gt 10 ] || { log "maven copied only $n jars"; exit 1; }
  rm -rf "$KDIR/build" "$CACHE/m2"  # the jars are copied out; the maven repo is not needed
  touch "$KDIR/.complete"
  log "kafka $KAFKA_VERSION jars: $n jars in $KDIR/lib"
fi
# --- franz-go group consumer (Go) ---------------------------------------------------
# Built from tests/clients/go/groupconsumer (go.mod/go.sum pin franz-go); rebuilt when its
# sources change. Modules and build cache are kept under $CACHE/go.
GO_SRC="$(cd "$(dirname "$0")/.." && pwd)/tests/clients/go/groupconsumer"
FRANZ_BIN="$CACHE/bin/franz-group-consumer"
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH="$PATH:/usr/local/go/bin"; fi
GO_OK=1
if ! command -v go >/dev/null 2>&1; then
  log "go not found: skipping the franz-go group consumer (its tests will fail; franz-go needs go >= 1.26)"
  GO_OK=0
fi
[ "$GO_OK" = 1 ] && GO_HASH="$(cat "$GO_SRC"/go.mod "$GO_SRC"/go.sum "$GO_SRC"/*.go | sha256sum | cut -c1-16)"
if [ "$GO_OK" != 1 ]; then
  :
elif [ -x "$FRANZ_BIN" ] && [ "$(cat "$FRANZ_BIN.src" 2>/dev/null)" = "$GO_HASH" ]; then
  log "franz-go group consumer: present ($FRANZ_BIN)"
else
  log "franz-go group consumer: building"
  mkdir -p "$CACHE/bin" "$CACHE/go"
  (cd "$GO_SRC" && GOFLAGS="-mod=readonly -modcacherw" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" \
     GOTOOLCHAIN=local go build -o "$FRANZ_BIN.tmp" . </dev/null)
  mv "$FRANZ_BIN.tmp" "$FRANZ_BIN"
  echo "$GO_HASH" > "$FRANZ_BIN.src"
fi

# --- MinIO (Go) ------------------------------------------------------------------------
# `go install module@version` builds with MinIO's own go.mod/go.sum (it has no replace
# directives). Cold: ~5 min and ~1.3 GiB of modules under $CACHE/go/mod; binary ~150 MB.
MINIO_BIN="$CACHE/bin/minio"
if [ "$GO_OK" != 1 ]; then
  log "go not found: skipping MinIO (object-store tests will fail)"
elif [ -x "$MINIO_BIN" ] && [ "$(cat "$MINIO_BIN.version" 2>/dev/null)" = "$MINIO_VERSION" ]; then
  log "minio: present ($MINIO_BIN)"
else
  log "minio $MINIO_VERSION: building (takes several minutes)"
  mkdir -p "$CACHE/bin" "$CACHE/go"
  rm -rf "$CACHE/go/gobin"
  GOFLAGS="-modcacherw" GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOBIN="$CACHE/go/gobin" \
    GOTOOLCHAIN=local go install "github.com/minio/minio@$MINIO_VERSION" </dev/null
  mv "$CACHE/go/gobin/minio" "$MINIO_BIN"
  rmdir "$CACHE/go/gobin"
  echo "$MINIO_VERSION" > "$MINIO_BIN.version"
fi

# --- etcd + etcdctl (Go) ---------------------------------------------------------------
# etcd's modules carry replace directives, so `go install go.etcd.io/etcd/server/v3@v` is
# refused; scripts/etcd-wrapper (go.mod/go.sum pin the version) builds both binaries.
# Rebuilt when the wrapper's sources change. Cold: ~1 min (+~10 s of module downloads).
ETCD_SRC="$(cd "$(dirname "$0")" && pwd)/etcd-wrapper"
ETCD_BIN="$CACHE/bin/etcd"
ETCDCTL_BIN="$CACHE/bin/etcdctl"
if [ "$GO_OK" != 1 ]; then
  log "go not found: skipping etcd (metadata-store tests will fail)"
else
  for m in server etcdctl; do
    grep -q "go.etcd.io/etcd/$m/v3 $ETCD_VERSION\$" "$ETCD_SRC/go.mod" || {
      log "scripts/etcd-wrapper/go.mod does not require go.etcd.io/etcd/$m/v3 $ETCD_VERSION"; exit 1; }
  done
  ETCD_HASH="$(cat "$ETCD_SRC"/go.mod "$ETCD_SRC"/go.sum "$ETCD_SRC"/*/*.go | sha256sum | cut -c1-16)"
  if [ -x "$ETCD_BIN" ] && [ -x "$ETCDCTL_BIN" ] && [ "$(cat "$ETCD_BIN.src" 2>/dev/null)" = "$ETCD_HASH" ]; then
    log "etcd: present ($ETCD_BIN, $ETCDCTL_BIN)"
  else
    log "etcd $ETCD_VERSION: building etcd and etcdctl"
    mkdir -p "$CACHE/bin" "$CACHE/go"
    (cd "$ETCD_SRC" && export GOFLAGS="-mod=readonly -modcacherw" GOMODCACHE="$CACHE/go/mod" \
       GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local &&
     go build -o "$ETCD_BIN.tmp" ./etcd </dev/null && go build -o "$ETCDCTL_BIN.tmp" ./etcdctl </dev/null)
    mv "$ETCD_BIN.tmp" "$ETCD_BIN"
    mv "$ETCDCTL_BIN.tmp" "$ETCDCTL_BIN"
    echo "$ETCD_HASH" > "$ETCD_BIN.src"
  fi
fi

# --- OpenTelemetry Collector (Go) -------------------------------------------------------
# scripts/otelcol-wrapper is what the collector builder (ocb) would generate for just the
# components the tests use; its go.mod/go.sum pin the release. Rebuilt when the wrapper's
# sources change. Cold: ~3 min on 2 cores (+~30 s, ~450 MB of module downloads); binary ~50 MB.
OTELCOL_SRC="$(cd "$(dirname "$0")" && pwd)/otelcol-wrapper"
OTELCOL_BIN="$CACHE/bin/otelcol"
if [ "$GO_OK" != 1 ]; then
  log "go not found: skipping the OpenTelemetry Collector (OTLP export tests will fail)"
else
  for m in go.opentelemetry.io/collector/otelcol \
           github.com/open-telemetry/opentelemetry-collector-contrib/exporter/fileexporter; do
    grep -q "$m $OTELCOL_VERSION\$" "$OTELCOL_SRC/go.mod" || {
      log "scripts/otelcol-wrapper/go.mod does not require $m $OTELCOL_VERSION"; exit 1; }
  done
  OTELCOL_HASH="$(cat "$OTELCOL_SRC"/go.mod "$OTELCOL_SRC"/go.sum "$OTELCOL_SRC"/*.go | sha256sum | cut -c1-16)"
  if [ -x "$OTELCOL_BIN" ] && [ "$(cat "$OTELCOL_BIN.src" 2>/dev/null)" = "$OTELCOL_HASH" ]; then
    log "otelcol: present ($OTELCOL_BIN)"
  else
    log "otelcol $OTELCOL_VERSION: building (takes a few minutes)"
    mkdir -p "$CACHE/bin" "$CACHE/go"
    (cd "$OTELCOL_SRC" && GOFLAGS="-mod=readonly -modcacherw" GOMODCACHE="$CACHE/go/mod" \
       GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local go build -o "$OTELCOL_BIN.tmp" . </dev/null)
    mv "$OTELCOL_BIN.tmp" "$OTELCOL_BIN"
    echo "$OTELCOL_HASH" > "$OTELCOL_BIN.src"
  fi
fi

# --- Kubernetes control plane, KWOK and Helm (operator tests) ------------------------------
# k8s.io/kubernetes replaces its k8s.io/* staging modules with local paths, so it cannot be
# `go install`ed; scripts/k8s-wrapper requires it and replaces each staging module with its
# published v0.37 release. The version variables are set so that the servers report
# K8S_VERSION (not v0.0.0, which fails version checks). KWOK and Helm have no replace
# directives and are installed at a pinned version. Cold: ~5 min for the control plane and
# ~2 min for KWOK and Helm on 2 cores (+~1 GB of module downloads); ~550 MB of binaries.
K8S_VERSION=v1.37.2
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
K8S_SRC="$(cd "$(dirname "$0")" && pwd)/k8s-wrapper"
K8S_BIN="$CACHE/k8s/bin"
if [ "$GO_OK" != 1 ]; then
  log "go not found: skipping the Kubernetes control plane (operator tests will fail)"
else
  grep -qE "^\s+k8s.io/kubernetes $K8S_VERSION( |$)" "$K8S_SRC/go.mod" || {
    log "scripts/k8s-wrapper/go.mod does not require k8s.io/kubernetes $K8S_VERSION"; exit 1; }
  K8S_HASH="$(cat "$K8S_SRC"/go.mod "$K8S_SRC"/go.sum | sha256sum | cut -c1-16)-$KWOK_VERSION-$HELM_VERSION"
  if [ -x "$K8S_BIN/kube-apiserver" ] && [ -x "$K8S_BIN/kwok" ] && [ -x "$K8S_BIN/helm" ] && \
     [ -f "$K8S_BIN/kwok-stages.yaml" ] && \
     [ "$(cat "$K8S_BIN/.src" 2>/dev/null)" = "$K8S_HASH" ]; then
    log "kubernetes $K8S_VERSION, kwok, helm: present ($K8S_BIN)"
  else
    log "kubernetes $K8S_VERSION control plane, kwok $KWOK_VERSION, helm $HELM_VERSION: building (takes several minutes)"
    mkdir -p "$K8S_BIN.tmp" "$CACHE/go"
    minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
    LD="-s -w"
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      LD="$LD -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      LD="$LD -X $p.gitTreeState=clean -X $p.gitCommit=stratus-k8s-wrapper -X $p.buildDate=2026-01-01T00:00:00Z"
    done
    export_go() { env GOFLAGS="-mod=readonly -modcacherw -trimpath" GOMODCACHE="$CACHE/go/mod" \
      GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local "$@"; }
    (cd "$K8S_SRC" && export_go go build -ldflags "$LD" -o "$K8S_BIN.tmp/" \
       k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
       k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl </dev/null)
    (cd "$K8S_BIN.tmp" && export_go env GOBIN="$K8S_BIN.tmp" GOFLAGS="-modcacherw -trimpath" \
       go install -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" </dev/null)
    (cd "$K8S_BIN.tmp" && export_go env GOBIN="$K8S_BIN.tmp" GOFLAGS="-modcacherw -trimpath" \
       go install -ldflags "-s -w" \
       "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" </dev/null)
    # KWOK's stages (node start and heartbeat over a Lease, pods ready and deleted), as
    # one config file: kwok ships them as kustomize files, not in the binary.
    STAGES="$CACHE/go/mod/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      echo "---"; cat "$STAGES/$f"
    done > "$K8S_BIN.tmp/kwok-stages.yaml"
    "$K8S_BIN.tmp/kube-apiserver" --version | grep -q "$K8S_VERSION" || {
      log "kube-apiserver does not report $K8S_VERSION"; exit 1; }
    echo "$K8S_HASH" > "$K8S_BIN.tmp/.src"
    rm -rf "$K8S_BIN"; mv "$K8S_BIN.tmp" "$K8S_BIN"
    # The build cache is large (~6 GB) and only this build uses it.
    rm -rf "$CACHE/go/build"
  fi
fi

# --- kafkajs (Node) ------------------------------------------------------------------
KAFKAJS_VERSION=2.2.4
if [ -f "$CACHE/node_modules/kafkajs/package.json" ] && \
   grep -q "\"version\": \"$KAFKAJS_VERSION\"" "$CACHE/node_modules/kafkajs/package.json"; then
  log "kafkajs: present ($CACHE/node_modules)"
else
  if ! command -v npm >/dev/null 2>&1; then
    log "npm: installing from apt"
    as_root apt-get update -qq </dev/null
    as_root apt-get install -y -qq nodejs npm </dev/null
  fi
  log "kafkajs $KAFKAJS_VERSION: installing with npm"
  npm install --prefix "$CACHE" --no-audit --no-fund --no-save --silent "kafkajs@$KAFKAJS_VERSION" </dev/null
fi
# --- cargo-fuzz (the fuzz targets under fuzz/) ------------------------------------------
# cargo-fuzz drives libFuzzer, which needs the nightly toolchain; the targets are skipped
# (with a message) on a machine without one. Cold: ~1.5 min.
CARGO_FUZZ_VERSION=0.13.2
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  log "cargo-fuzz: no nightly toolchain here; the fuzz targets will be skipped"
elif "$CACHE/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "cargo-fuzz: present ($CACHE/bin/cargo-fuzz)"
else
  log "cargo-fuzz $CARGO_FUZZ_VERSION: building"
  CARGO_TARGET_DIR="$CACHE/cargo-fuzz-build" cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" \
    --locked --root "$CACHE" --quiet </dev/null
  rm -rf "$CACHE/cargo-fuzz-build"
fi
log "done (cache: $CACHE)"

"""The container image: built with podman from the repository's Dockerfile over a runtime
base made on this machine (scripts/make-base-image.sh; no registry is reachable), with the
binaries of this build; the broker runs in it and answers a Kafka client."""

import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import pytest

from conftest import REPO, STRATUS_BIN, free_port, port_open
from util import consume, produce_sync, producer, tp

pytestmark = [pytest.mark.stratus_only, pytest.mark.timeout(600)]

PODMAN = shutil.which("podman")
# Sandboxes (CI's among them) refuse raising rlimits and mix cgroup versions: podman keeps the
# host's limits and runs containers with runc under cgroupfs there, as it can anywhere.
CONF = Path(tempfile.mkdtemp(prefix="stratus-podman-")) / "containers.conf"
CONF.write_text('[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\ncgroup_manager = "cgroupfs"\n')
ENV = dict(os.environ, CONTAINERS_CONF=str(CONF))


def run(*args, check=True, timeout=300):
    if args[0] == "run":
        args = ("run", "--ulimit", "host", *args[1:])
    r = subprocess.run([PODMAN, *args], capture_output=True, text=True, timeout=timeout, env=ENV)
    if check and r.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {r.stderr.strip()[-2000:]}")
    return r


@pytest.fixture(scope="module")
def image():
    assert PODMAN, "podman is not installed (scripts/install-test-deps.sh installs it)"
    profile = STRATUS_BIN.parent.name  # debug in the suite
    operator_bin = STRATUS_BIN.parent / "stratus-operator"
    assert operator_bin.exists(), f"{operator_bin}: build the workspace first (cargo build)"
    tag = uuid.uuid4().hex[:8]
    base, img = f"localhost/stratus-base:{tag}", f"localhost/stratus:{tag}"
    subprocess.run([str(REPO / "scripts" / "make-base-image.sh"), base, str(STRATUS_BIN), str(operator_bin)],
                   check=True, capture_output=True, text=True, timeout=300, env=ENV)
    # A small context: the Dockerfile and the two binaries (not the whole target directory).
    ctx = Path(tempfile.mkdtemp(prefix="stratus-image-"))
    try:
        (ctx / "target" / profile).mkdir(parents=True)
        shutil.copy(REPO / "Dockerfile", ctx / "Dockerfile")
        # Stripped copies: the image's layers hold each binary twice (its stage and the final
        # one), and debug info would only take the disk the suite runs on.
        strip = shutil.which("strip")
        for b in (STRATUS_BIN, operator_bin):
            dest = ctx / "target" / profile / b.name
            if strip:
                subprocess.run([strip, "--strip-debug", "-o", str(dest), str(b)], check=True, timeout=120)
            else:
                shutil.copy(b, dest)
        dangling = set(run("images", "-q", "--filter", "dangling=true").stdout.split())
        run("build", "-q", "-t", img, "--build-arg", "BINARIES=prebuilt", "--build-arg", f"PROFILE={profile}",
            "--build-arg", f"RUNTIME_IMAGE={base}", "--build-arg", "REVISION=test", str(ctx))
        # The build's own intermediate stages (the binaries' stage is as big as they are).
        ours = set(run("images", "-q", "--filter", "dangling=true").stdout.split()) - dangling
        yield img
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
        run("rmi", "-f", img, base, check=False)
        if "ours" in locals() and ours:
            run("rmi", "-f", *sorted(ours), check=False)


def test_the_image_is_non_root_labelled_and_holds_both_binaries(image):
    info = json.loads(run("image", "inspect", image).stdout)[0]
    cfg = info["Config"]
    assert cfg["User"] == "65532:65532"
    assert cfg["Entrypoint"] == ["/usr/local/bin/stratus"]
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.title"] == "stratus"
    assert labels["org.opencontainers.image.revision"] == "test"
    assert {"9092/tcp", "9644/tcp", "9645/tcp"} <= set(cfg["ExposedPorts"])
    # No shell: only the binaries, their libraries and the CA bundle.
    r = run("run", "--rm", "--entrypoint", "/bin/sh", image, "-c", "true", check=False)
    assert r.returncode != 0
    crds = run("run", "--rm", "--entrypoint", "/usr/local/bin/stratus-operator", image, "crds").stdout
    for f in sorted((REPO / "charts" / "stratus" / "crds").glob("*.yaml")):
        assert f.read_text() in crds, f"{f.name} is not what the image's operator prints"


def test_the_broker_runs_in_the_image_and_answers_a_kafka_client(image):
    port, http = free_port(), free_port()
    name = f"stratus-test-{uuid.uuid4().hex[:6]}"
    run("run", "-d", "--name", name, "--network", "host", image,
        "--data-dir", "/var/lib/stratus", "--listeners", f"PLAINTEXT://127.0.0.1:{port}",
        "--set", f"http.listener=127.0.0.1:{http}")
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not port_open(port):
            time.sleep(0.2)
        assert port_open(port), run("logs", name, check=False).stdout[-3000:]
        ready = urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=5)
        assert ready.status == 200
        bootstrap = f"127.0.0.1:{port}"
        p = producer(bootstrap)
        produce_sync(p, "in-a-container", [{"key": b"k", "value": f"v{i}".encode()} for i in range(10)])
        got = consume(bootstrap, [tp("in-a-container", 0, 0)], 10)
        assert [m.value() for m in got] == [f"v{i}".encode() for i in range(10)]
        # SIGTERM (podman stop) is a clean shutdown.
        run("stop", "-t", "30", name)
        state = json.loads(run("inspect", name).stdout)[0]["State"]
        assert state["ExitCode"] == 0, run("logs", name, check=False).stderr[-3000:]
    finally:
        run("rm", "-f", name, check=False)

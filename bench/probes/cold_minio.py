#!/usr/bin/env python3
"""Probe: a cold read from MinIO. One Stratus broker on MinIO and etcd (the cluster
benchmark's helpers), 12 partitions, RECORDS (default 500,000) records of 1 KiB produced
with big batches; then the broker is restarted (its memory and disk caches start empty) and
MinIO's files are evicted from the page cache, and bench/AssignConsumerPerf.java reads
everything back. Prints the read's MiB/s (whole and last two thirds) and the CPU seconds the
broker, MinIO and the consumer used during it, and the broker's object-store GETs.

    python3 bench/probes/cold_minio.py [--set k=v ...]      (run with the test venv's python;
                                                            STRATUS_BIN as the other probes)
    python3 bench/probes/cold_minio.py --kafka              the same on Apache Kafka (its data
                                                            files evicted, no restart)
"""
import os
import re
import sys
import threading
import time
import urllib.request
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BENCH))
import cluster as C  # noqa: E402

RECORDS = int(os.environ.get("RECORDS", "500000"))
TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / TICK
    except OSError:
        return 0.0


def tree_cpu(pid):
    """CPU seconds of pid and its children (a wrapper script's exec'd server)."""
    total = cpu_s(pid)
    for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split() if Path(f"/proc/{pid}").exists() else []:
        total += tree_cpu(int(c))
    return total


def metric(port, name, label=""):
    """The sum of a metric's series whose labels contain `label`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(m.group(2)) for m in re.finditer(rf"^{name}(\{{[^}}]*\}})? ([\d.e+]+)$", text, re.M)
               if label in (m.group(1) or ""))


def options(usage):
    """The probe's command line: `--set k=v` broker settings, `--kafka`, and `--https`
    (MinIO serves https, with a CA of the probe's own that the broker trusts)."""
    sets, args, kafka, https = {}, sys.argv[1:], False, False
    while args:
        if args[0] == "--kafka":
            kafka, args = True, args[1:]
        elif args[0] == "--https":
            https, args = True, args[1:]
        elif args[0] == "--set" and len(args) > 1:
            k, v = args[1].split("=", 1)
            sets[k] = v
            args = args[2:]
        else:
            sys.exit(usage)
    return sets, kafka, https


def https_infra():
    """MinIO over https with a certificate of a new CA (`.ca.pem`), etcd as in `Infra`."""
    import shutil
    import subprocess
    from certs import CA, server_dn
    from cluster_infra import ACCESS_KEY, BUCKET, SECRET_KEY, Infra

    class HttpsInfra(Infra):
        def __init__(self, cache):
            super().__init__(cache)
            self.ca = CA(self.tmp / "ca")
            server = self.ca.issue("server", server_dn(), server=True)
            certs = self.tmp / "minio-certs"
            certs.mkdir()
            shutil.copy(server.crt, certs / "public.crt")
            shutil.copy(server.key, certs / "private.key")
            self.minio.args = [*self.minio.args, "--certs-dir", str(certs)]

        @property
        def s3_endpoint(self):
            return f"https://127.0.0.1:{self.minio.port}"

        def start(self):
            self.etcd.start()
            self.minio.start()
            curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", str(self.ca.pem)]
            for _ in range(300):
                r = subprocess.run([*curl, f"{self.s3_endpoint}/minio/health/live"], capture_output=True, text=True)
                if r.stdout.strip() == "200":
                    break
                time.sleep(0.2)
            for _ in range(100):  # MinIO may answer 503 for a moment after it is live
                r = subprocess.run([*curl, "-X", "PUT", "--aws-sigv4", "aws:amz:us-east-1:s3",
                                    "--user", f"{ACCESS_KEY}:{SECRET_KEY}", f"{self.s3_endpoint}/{BUCKET}"],
                                   capture_output=True, text=True)
                if r.stdout.strip() in ("200", "409"):
                    return
                time.sleep(0.2)
            raise RuntimeError(f"bucket not created: HTTP {r.stdout} {r.stderr}")

    return HttpsInfra(C.CACHE)


class Target:
    """MinIO and etcd, and on them one Stratus broker with `sets` (or Apache Kafka on its
    local disk); `with` stops them all."""

    def __init__(self, name, sets, kafka, https=False):
        from cluster_infra import Infra
        self.infra = https_infra() if https else Infra(C.CACHE)
        if https:
            sets = {"object.store.ssl.truststore.location": str(self.infra.ca.pem), **sets}
        self.cluster = self.kafka = self.broker = None
        try:
            self.infra.start()
            if kafka:
                self.kafka = C.Kafka().start()
                self.bootstrap = self.kafka.bootstrap
                self.pids = {"broker": self.kafka.proc.pid, "minio": self.infra.minio.proc.pid}
            else:
                self.cluster = C.stratus_cluster(self.infra, 1, name, settings=sets)
                self.broker = b = self.cluster.brokers[0]
                self.bootstrap = self.cluster.bootstrap
                self.pids = {"broker": b.proc.pid, "minio": self.infra.minio.proc.pid}
        except BaseException:
            self.__exit__()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *_):
        if self.cluster:
            self.cluster.cleanup()
        if self.kafka:
            self.kafka.stop()
        self.infra.stop()


def main():
    sets, kafka, https = options(__doc__)
    with Target("probe-cold", sets, kafka, https) as t:
        bootstrap, b, c, k, infra = t.bootstrap, t.broker, t.cluster, t.kafka, t.infra
        C.create(bootstrap, "cold", C.PARTITIONS)
        p = C.producer_perf(bootstrap, "cold", RECORDS, -1, C.BIG_PROPS)
        print(f"produced {RECORDS} records at {p['mib_s']:.1f} MiB/s", flush=True)
        time.sleep(5)
        if kafka:
            C.evict(k.tmp / "data")
            gets0 = 0
        else:
            C.restart_cold(infra, c)
            C.wait_leaders(bootstrap, "cold")
            gets0 = metric(b.http_port, "stratus_object_store_requests_total", 'operation="get"')
        # After the restart: the broker's process is new.
        pids = {"broker": k.proc.pid if kafka else b.proc.pid, "minio": infra.minio.proc.pid}
        tools = C.java_tools()
        before = {k: tree_cpu(v) for k, v in pids.items()}
        import subprocess
        perf = None
        if os.environ.get("PERF"):  # PERF=FILE: perf record of the broker during the read
            # PERF_ARGS="--call-graph dwarf,16384 -F 199" for call graphs through Rust code
            perf = subprocess.Popen(["perf", "record", *os.environ.get("PERF_ARGS", "-F 499 -g").split(), "-o", os.environ["PERF"],
                                     "-p", str(pids["broker"])], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        proc = subprocess.Popen([*tools, "AssignConsumerPerf", bootstrap, "cold", str(RECORDS), "15000"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        consumer = [0.0]

        def watch():
            while proc.poll() is None:
                consumer[0] = max(consumer[0], tree_cpu(proc.pid))
                time.sleep(0.2)
        w = threading.Thread(target=watch)
        w.start()
        out = proc.communicate()[0]
        w.join()
        secs = time.time() - t0
        if perf:
            perf.send_signal(2)
            perf.wait()
        m = re.search(r"^RESULT .*MBps=([\d.]+) .*first_record_ms=([\d.-]+) steady_MBps=([\d.]+)", out, re.M)
        if proc.returncode != 0 or not m:
            sys.exit(f"consumer failed:\n{C.tail(out)}")
        used = {k: tree_cpu(v) - before[k] for k, v in pids.items()}
        gets = 0 if kafka else metric(b.http_port, "stratus_object_store_requests_total", 'operation="get"') - gets0
        print(f"cold read: {float(m.group(1)):.1f} MiB/s, last two thirds {float(m.group(3)):.1f} MiB/s, "
              f"first record after {float(m.group(2)):.0f} ms; "
              f"CPU s: broker {used['broker']:.1f}, minio {used['minio']:.1f}, consumer {consumer[0]:.1f} "
              f"(over {secs:.1f} s incl. JVM start); object-store GETs {gets:.0f}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Draws the broker's module graph from the code: which module uses which (from `crate::…`
paths outside test modules, as ../shared/tools/import-cycles.py reads them), in layers: a
module uses only modules of lower layers. Crate dependencies come from the Cargo.toml files.

  scripts/module-graph.py            prints the graph
  scripts/module-graph.py --check F  fails if the graph in F (between the markers
                                     <!-- module-graph --> and <!-- /module-graph -->) is
                                     not the one the code draws, or if there is a cycle
  scripts/module-graph.py --write F  rewrites that part of F
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN, END = "<!-- module-graph -->", "<!-- /module-graph -->"


def modules(src):
    files = {}
    for dp, _, fs in os.walk(src):
        for f in fs:
            if f.endswith(".rs"):
                rel = os.path.relpath(os.path.join(dp, f), src)[:-3]
                mod = re.sub(r"(::)?mod$", "", rel.replace(os.sep, "::"))
                if mod in ("lib", "main", ""):
                    continue
                text = open(os.path.join(dp, f), errors="replace").read()
                files[mod] = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", text, flags=re.S)
    mods = set(files)

    def owner(path):
        parts = path.split("::")
        for k in range(len(parts), 0, -1):
            if "::".join(parts[:k]) in mods:
                return "::".join(parts[:k])
        return None

    graph = {m: set() for m in mods}
    for m, text in files.items():
        for ref in re.findall(r"crate::((?:[a-z_][a-z0-9_]*::)*[a-z_][a-z0-9_]*)", text):
            o = owner(ref)
            if o and o != m and not m.startswith(o + "::") and not o.startswith(m + "::"):
                graph[m].add(o)
    return graph


def layers(graph):
    level, visiting = {}, set()

    def depth(m):
        if m in level:
            return level[m]
        if m in visiting:
            raise SystemExit(f"import cycle through {m}")
        visiting.add(m)
        level[m] = 1 + max((depth(d) for d in graph[m]), default=-1)
        visiting.discard(m)
        return level[m]

    for m in graph:
        depth(m)
    return level


# What each layer may not touch (checked with --check, printed with the graph). A module
# matches a rule when it is the module named or one of its children.
RULES = [
    ("config", ["broker", "cluster", "group", "handlers", "partition", "read", "server", "upkeep", "wal"],
     "settings are read by everyone and read nothing"),
    ("partition", ["broker", "cluster", "group", "handlers", "read", "server", "upkeep", "wal"],
     "partition state does no I/O and sees no other component"),
    ("read", ["broker", "handlers", "server", "upkeep", "wal"], "reads never write and see no Broker"),
    ("wal", ["broker", "handlers", "server", "upkeep", "group"], "the WAL sees partitions, the fence and the stores only"),
    ("upkeep", ["broker", "handlers", "server"], "upkeep never answers clients and sees no Broker"),
    ("group", ["broker", "handlers", "server", "partition", "wal", "upkeep", "read"],
     "the group coordinator sees its stores and the fence, not the log"),
    ("cluster", ["handlers", "server"], "the cluster layer never answers Kafka clients"),
    ("txn", ["broker", "handlers", "server", "partition", "wal", "upkeep", "read", "group"],
     "the transaction coordinator sees its stores and the fence; it asks partition owners for markers"),
    ("coordinator", ["broker", "group", "handlers", "partition", "read", "server", "txn", "upkeep", "wal"],
     "the shard machinery knows no particular coordinator"),
    ("handlers", ["server", "startup"], "handlers answer requests; they do not own connections or start anything"),
    ("registry", ["broker", "cluster", "group", "handlers", "read", "server", "topics", "upkeep", "wal"],
     "the registry maps topics; it sees partitions and settings only"),
    ("handlers::lookup", ["broker"], "lookups take the registry, not the broker"),
    ("handlers::offsets", ["broker"], "offset lookups take the registry, the routing and the reader"),
    ("handlers::produce", ["broker"], "Produce takes the registry, the routing, the WAL and the clock"),
    ("handlers::fetch", ["broker"], "Fetch takes the registry, the routing, the reader and the replicas"),
    ("handlers::groups", ["broker"], "group APIs take the coordinator, the registry and the routing"),
    ("handlers::group_offsets", ["broker"], "offset APIs take the coordinator and the registry"),
    ("handlers::coordination", ["broker"], "NOT_COORDINATOR needs the coordinator only"),
    ("handlers::metadata", ["broker"], "Metadata takes the registry, the routing and the topic lifecycle"),
    ("handlers::configs", ["broker"], "config APIs take the registry, the topic lifecycle and the settings"),
    ("topics", ["broker", "handlers", "server", "upkeep", "wal", "group"],
     "the topic lifecycle writes topic records and installs them in the registry; nothing else"),
    ("cluster::routing", ["broker", "registry", "wal", "group"],
     "routing is the fence and the cluster view, nothing else"),
    ("cluster::records", ["broker", "registry", "wal", "group", "topics"],
     "partition-record writes are the store, the fence and the partition"),
    ("cluster::ownership", ["broker", "wal"], "ownership moves partitions and shards, not the WAL"),
    ("handlers::admin", ["broker"], "admin APIs take the registry, the topic lifecycle, upkeep and producer ids"),
    ("auth", ["broker", "cluster", "group", "partition", "read", "registry", "server", "topics",
              "upkeep", "wal"],
     "authentication sees the settings and the credential store; never the log, groups or the broker"),
    ("quotas", ["broker", "cluster", "group", "handlers", "partition", "read", "registry", "server",
                "topics", "upkeep", "wal"],
     "quotas measure clients against the table in the store; nothing else"),
    ("telemetry", ["server", "upkeep", "topics", "cluster", "wal", "group", "partition", "read"],
     "telemetry observes the broker through its public state; it changes nothing"),
    ("producer_ids", ["broker", "cluster", "handlers", "partition", "registry", "wal"],
     "producer ids are a block reserved in the metadata store, nothing else"),
]


def violations(graph):
    out = []
    for m, deps in graph.items():
        for who, forbidden, why in RULES:
            if m == who or m.startswith(who + "::"):
                for d in deps:
                    if any(d == f or d.startswith(f + "::") for f in forbidden):
                        out.append(f"{m} uses {d}: {why}")
    return sorted(out)


def crate_deps():
    out = []
    for path in ["Cargo.toml", "proto/Cargo.toml", "crates/meta/Cargo.toml", "crates/log/Cargo.toml",
                 "crates/auth/Cargo.toml", "crates/metrics/Cargo.toml", "operator/Cargo.toml"]:
        text = open(os.path.join(ROOT, path)).read()
        name = re.search(r'^name = "([^"]+)"', text, re.M).group(1)
        deps = text.split("[dependencies]", 1)[1].split("\n[", 1)[0]
        ours = sorted(set(re.findall(r"^(stratus-[a-z]+)", deps, re.M)))
        out.append(f"{name:<14} uses {', '.join(ours) if ours else 'no other stratus crate'}")
    return out


def draw():
    graph = modules(os.path.join(ROOT, "src"))
    level = layers(graph)
    lines = ["Crates:", ""] + ["  " + l for l in crate_deps()] + [""]
    bad = violations(graph)
    if bad:
        raise SystemExit("module rules broken:\n  " + "\n  ".join(bad))
    lines += ["Rules (checked): a module may not use the modules listed.", ""]
    for who, forbidden, why in RULES:
        lines.append(f"  {who:<10} not {', '.join(forbidden)}: {why}")
    lines += ["", "Modules of the broker (src/), by layer; each uses only what is listed after it:", ""]
    for n in sorted(set(level.values()), reverse=True):
        lines.append(f"  layer {n}")
        for m in sorted(k for k, v in level.items() if v == n):
            deps = ", ".join(sorted(graph[m])) or "-"
            lines.append(f"    {m:<24} → {deps}")
    return "\n".join(lines)


def main():
    graph = "```\n" + draw() + "\n```"
    if len(sys.argv) == 3 and sys.argv[1] in ("--check", "--write"):
        path = sys.argv[2]
        text = open(path).read()
        if BEGIN not in text or END not in text:
            raise SystemExit(f"{path}: no {BEGIN} … {END} section")
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        new = f"{head}{BEGIN}\n{graph}\n{END}{tail}"
        if sys.argv[1] == "--write":
            open(path, "w").write(new)
        elif new != text:
            raise SystemExit(f"{path}: the module graph is not the code's; run scripts/module-graph.py --write {path}")
        return
    print(graph)


main()

#!/usr/bin/env python3
"""Fails when `cargo build -p kiln-compiler` (README's first command), a job crate (which builds
only the runtime, with the optional features its spec uses) and the workspace's `cargo test`
would compile DataFusion differently.

Cargo hashes a unit from its package, features, profile and the hashes of its dependencies,
build scripts and proc-macros included. This reads both unit graphs (`--unit-graph`, unstable,
hence RUSTC_BOOTSTRAP) and reports each unit of the first build with no identical unit in the
second, starting from the ones whose dependencies all match: those are the features to pin in
runtime/Cargo.toml (`[dependencies]` for the target side, `[build-dependencies]` for the host).
"""
import functools, hashlib, json, os, subprocess, sys

def unit_graph(*args):
    env = dict(os.environ, RUSTC_BOOTSTRAP="1")
    out = subprocess.run(["cargo", *args, "-Z", "unstable-options", "--unit-graph"],
                         env=env, check=True, capture_output=True, text=True).stdout
    units = json.loads(out)["units"]

    @functools.lru_cache(None)
    def key(i):
        u = units[i]
        p = u["profile"]
        k = [u["pkg_id"], sorted(u["features"]), u["mode"], u["target"]["name"], u.get("platform"),
             p.get("opt_level"), p.get("debuginfo"), sorted(key(d["index"]) for d in u["dependencies"])]
        return hashlib.sha1(json.dumps(k).encode()).hexdigest()

    return units, key

def name(u):
    return f'{u["pkg_id"].split("#")[-1]} ({u["target"]["name"]}, {u["mode"]})'

def main():
    wide, wide_key = unit_graph("test", "--workspace", "--no-run")
    have = {wide_key(i) for i in range(len(wide))}
    bad = 0
    # A job crate builds the runtime with only the optional features its spec uses.
    lean = ["build", "-p", "kiln-runtime", "--no-default-features"]
    for build in (["build", "-p", "kiln-compiler"], ["build", "-p", "kiln-runtime"], lean,
                  lean + ["--features", "delta"], lean + ["--features", "kafka"]):
        units, key = unit_graph(*build)
        differ = [i for i in range(len(units)) if key(i) not in have
                  and not units[i]["pkg_id"].startswith("path+")]
        roots = [i for i in differ if all(key(d["index"]) in have for d in units[i]["dependencies"])]
        if differ:
            bad += 1
            print(f"cargo {' '.join(build)}: {len(differ)} registry units differ from `cargo test`'s, e.g. "
                  + ", ".join(sorted({units[i]['pkg_id'].split('#')[-1] for i in differ})[:8]))
            for i in roots:
                print(f"  first difference: {name(units[i])} features {sorted(units[i]['features'])}")
    if bad:
        sys.exit("pin these features in runtime/Cargo.toml (see ARCHITECTURE.md, 'One feature set')")
    print("one build: kiln, the tests and the job crates share every registry unit")

main()

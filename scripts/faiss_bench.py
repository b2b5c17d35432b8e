#!/usr/bin/env python3
"""FAISS on the same vectors as ralmspec's dense bench (a comparison only, never a product
dependency). Called by `examples/dense_bench.rs`, which reads the JSON this prints on stdout.

    faiss_bench.py --vectors V.f32 --dims D --queries Q.f32 [--hnsw M,EFC] [--efs 16,32,...]
                   [--batches 1,2,...] [--reps R] [--calls C]

V.f32 / Q.f32: little-endian f32, row-major (an index folder's vectors.f32 is read in place,
memory-mapped). Prints one JSON object: flat and HNSW latencies per call for each batch size
(minimum over R repetitions of the mean over C calls), HNSW recall@10 against exact search for
each efSearch, build time, and faiss's thread count.

`--install` makes the venv (<store>/bench/faiss-venv, with faiss-cpu and numpy from PyPI) and
re-runs this script inside it; the bench passes it.
"""

import argparse
import json
import os
import subprocess
import sys
import time


def store():
    if os.environ.get("RALMSPEC_HOME"):
        return os.environ["RALMSPEC_HOME"]
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg.startswith("/"):
        return os.path.join(xdg, "ralmspec")
    return os.path.join(os.environ["HOME"], ".cache", "ralmspec")


def ensure_venv():
    venv = os.path.join(store(), "bench", "faiss-venv")
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
    probe = subprocess.run([python, "-c", "import faiss, numpy"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run(
            [python, "-m", "pip", "install", "-q", "faiss-cpu==1.15.1", "numpy"],
            check=True,
            stdout=sys.stderr,
        )
    return python


def timed(fn, reps, calls):
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        for c in range(calls):
            fn(c)
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--vectors", required=True)
    p.add_argument("--dims", type=int, required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--hnsw", default="")
    p.add_argument("--efs", default="16,32,64,128,256")
    p.add_argument("--batches", default="1,2,4,8,16,32")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--install", action="store_true")
    a = p.parse_args()
    if a.install:
        python = ensure_venv()
        args = [x for x in sys.argv[1:] if x != "--install"]
        sys.exit(subprocess.run([python, __file__] + args).returncode)

    import faiss
    import numpy as np

    x = np.memmap(a.vectors, dtype="<f4", mode="r").reshape(-1, a.dims)
    q = np.fromfile(a.queries, dtype="<f4").reshape(-1, a.dims)
    k = 10
    out = {"faiss_version": faiss.__version__, "threads": faiss.omp_get_max_threads(), "n": len(x)}

    start = time.perf_counter()
    flat = faiss.IndexFlatIP(a.dims)
    flat.add(np.ascontiguousarray(x))
    out["flat_add_s"] = time.perf_counter() - start
    _, truth = flat.search(q, k)
    batches = [int(b) for b in a.batches.split(",")]
    out["flat_ms"] = {}
    for b in batches:
        calls = max(1, min(a.calls, len(q) // b))
        out["flat_ms"][b] = timed(lambda c: flat.search(q[c * b:(c + 1) * b], k), a.reps, calls)

    if a.hnsw:
        m, efc = (int(v) for v in a.hnsw.split(","))
        hnsw = faiss.IndexHNSWFlat(a.dims, m, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = efc
        start = time.perf_counter()
        hnsw.add(np.ascontiguousarray(x))
        out["hnsw_build_s"] = time.perf_counter() - start
        out["hnsw"] = []
        for ef in [int(e) for e in a.efs.split(",")]:
            hnsw.hnsw.efSearch = ef
            _, got = hnsw.search(q, k)
            recall = float(np.mean([len(set(g) & set(t)) / k for g, t in zip(got, truth)]))
            lat = {}
            for b in batches:
                calls = max(1, min(a.calls, len(q) // b))
                lat[b] = timed(lambda c: hnsw.search(q[c * b:(c + 1) * b], k), a.reps, calls)
            out["hnsw"].append({"ef": ef, "recall": recall, "ms": lat})
    print(json.dumps(out))


if __name__ == "__main__":
    main()

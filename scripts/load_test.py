#!/usr/bin/env python3
"""Load test of `ralmspec serve` (standard library only; loopback only; bounded).

    scripts/load_test.py [--url http://127.0.0.1:8080] [--clients 32] [--requests 64]
                         [--max-tokens 16] [--deadline 900]

1. Reference: every distinct request (question x retrieval settings) is sent alone, one at
   a time, and its answer (text + sources) recorded.
2. Load: --clients threads send --requests requests in all (each distinct request several
   times, half of them streamed) at once.
3. Checks: every request got exactly one answer (nothing lost), every response id is unique
   (nothing duplicated), and every answer equals its own request's single-request answer
   (nothing mixed up: questions differ, so a swapped answer differs). Exits 1 otherwise.
4. Prints throughput and a latency table (p50/p90/p99/max; time to first token for streams).

Stops by itself: each request has a timeout, and the whole run a deadline.
"""

import argparse
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

QUESTIONS = [
    "What is the capital of France?",
    "Who discovered penicillin?",
    "What is the largest planet in the solar system?",
    "Who wrote Pride and Prejudice?",
    "When did the Second World War end?",
    "What is photosynthesis?",
    "Who painted the Mona Lisa?",
    "What is the tallest mountain on Earth?",
]
SETTINGS = [
    {"engine": "baseline"},
    {"engine": "spec"},
    {"engine": "spec", "stride": 2, "prefetch": 0, "async": True},
]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class Client:
    """One keep-alive HTTP connection to the server."""

    def __init__(self, url, timeout):
        self.host, self.port = url.hostname, url.port or 80
        self.timeout = timeout
        self.conn = None

    def post(self, path, body, stream):
        """Returns (status, answer dict or error text, first-token latency or None)."""
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        started = time.monotonic()
        try:
            self.conn.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
            resp = self.conn.getresponse()
            if resp.status != 200:
                return resp.status, resp.read().decode(), None
            if not stream:
                data = json.loads(resp.read())
                return 200, {"id": data["id"], "text": data["choices"][0]["text"],
                             "sources": data["sources"]}, None
            return (200,) + read_stream(resp, started)
        except Exception:
            self.conn.close()
            self.conn = None
            raise


def read_stream(resp, started):
    text, sources, ids, first = "", [], set(), None
    done = False
    for raw in resp:
        line = raw.decode().rstrip("\r\n")
        if not line.startswith("data: "):
            continue
        payload = line[len("data: "):]
        if payload == "[DONE]":
            done = True
            break
        chunk = json.loads(payload)
        if "error" in chunk:
            raise RuntimeError(f"stream error: {chunk['error']}")
        ids.add(chunk["id"])
        if chunk["choices"] and chunk["choices"][0].get("text"):
            if first is None:
                first = time.monotonic() - started
            text += chunk["choices"][0]["text"]
        for s in chunk.get("sources", []):
            if sources and sources[-1]["doc"] == s["doc"] and sources[-1]["end"] == s["start"]:
                sources[-1] = dict(sources[-1], end=s["end"])
            else:
                sources.append(dict(s))
    resp.read()  # the end of the chunked body, so that the connection can be reused
    if not done or len(ids) != 1:
        raise RuntimeError(f"stream ended without [DONE] or with ids {ids}")
    return {"id": ids.pop(), "text": text, "sources": sources}, first


def percentile(values, p):
    values = sorted(values)
    if not values:
        return float("nan")
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per request")
    ap.add_argument("--deadline", type=float, default=900, help="seconds for the whole run")
    args = ap.parse_args()
    url = urlparse(args.url)
    if url.hostname not in LOOPBACK and not url.hostname.startswith("127."):
        sys.exit(f"refusing {url.hostname}: the load test only targets loopback addresses")
    if not (1 <= args.clients <= 256 and 1 <= args.requests <= 10000):
        sys.exit("--clients must be 1..256 and --requests 1..10000")
    deadline = time.monotonic() + args.deadline

    distinct = [(q, s) for q in QUESTIONS for s in SETTINGS]

    def body(i, stream):
        q, s = distinct[i]
        return {"model": args.model, "prompt": q, "max_tokens": args.max_tokens,
                "retrieval": s, "stream": stream}

    print(f"reference: {len(distinct)} distinct requests, one at a time", flush=True)
    client = Client(url, args.timeout)
    reference = []
    for i in range(len(distinct)):
        status, answer, _ = client.post("/v1/completions", body(i, False), False)
        if status != 200:
            sys.exit(f"reference request {i} failed: {status} {answer}")
        reference.append(answer)
        if time.monotonic() > deadline:
            sys.exit("deadline passed during the reference phase")

    work = [(n, n % len(distinct), n % 2 == 1) for n in range(args.requests)]
    results = {}
    lock = threading.Lock()
    local = threading.local()

    def one(item):
        n, i, stream = item
        if time.monotonic() > deadline:
            return
        if not hasattr(local, "client"):
            local.client = Client(url, args.timeout)
        started = time.monotonic()
        try:
            status, answer, first = local.client.post("/v1/completions", body(i, stream), stream)
        except Exception as e:  # counted as a failure below
            status, answer, first = "exception", repr(e), None
        took = time.monotonic() - started
        with lock:
            if n in results:
                results[n] = ("duplicate", None, None, None)
            else:
                results[n] = (status, answer, took, first)

    print(f"load: {args.requests} requests from {args.clients} concurrent clients "
          f"(max_tokens {args.max_tokens}, half streamed)", flush=True)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=args.clients) as pool:
        list(pool.map(one, work))
    wall = time.monotonic() - started

    problems = []
    ids = set()
    latencies, firsts, tokens = [], [], 0
    statuses = {}
    for n, i, stream in work:
        if n not in results:
            problems.append(f"request {n}: lost (no result)")
            continue
        status, answer, took, first = results[n]
        statuses[status] = statuses.get(status, 0) + 1
        if status != 200:
            problems.append(f"request {n}: {status} {str(answer)[:200]}")
            continue
        if answer["id"] in ids:
            problems.append(f"request {n}: duplicated response id {answer['id']}")
        ids.add(answer["id"])
        want = reference[i]
        if (answer["text"], answer["sources"]) != (want["text"], want["sources"]):
            problems.append(f"request {n} ({'stream' if stream else 'whole'}): answer differs from "
                            f"the single-request answer: {answer['text']!r} vs {want['text']!r}")
        latencies.append(took)
        if first is not None:
            firsts.append(first)
        tokens += want["sources"][-1]["end"] if want["sources"] else 0

    ok = statuses.get(200, 0)
    print()
    print(f"| clients | requests | ok | wall s | req/s | tokens/s |")
    print(f"|---|---|---|---|---|---|")
    print(f"| {args.clients} | {args.requests} | {ok} | {wall:.1f} | {ok / wall:.2f} | {tokens / wall:.1f} |")
    print()
    print("| latency (s) | p50 | p90 | p99 | max |")
    print("|---|---|---|---|---|")
    for name, values in [("request", latencies), ("first token (streamed)", firsts)]:
        print(f"| {name} | {percentile(values, 50):.2f} | {percentile(values, 90):.2f} | "
              f"{percentile(values, 99):.2f} | {max(values, default=float('nan')):.2f} |")
    print()
    if problems:
        print(f"FAILED: {len(problems)} problem(s)")
        for p in problems[:20]:
            print("  " + p)
        sys.exit(1)
    print(f"ok: {ok}/{args.requests} answers, none lost, none duplicated, "
          f"each identical to its single-request answer")


if __name__ == "__main__":
    main()

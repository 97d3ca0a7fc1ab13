#!/usr/bin/env python3
"""Post a generated JCH data set to a running seismo, once, by one client.

Usage: bench/jch/load.py OTLP_HTTP_URL DATA_DIR [BATCHES]

Prints the rate every 1,000 batches and at the end, with the number of
batches refused (non-200); refused batches are not retried. The load half
of jaeger_side.py, for watching a server (RSS, profiles) under the load.
"""
import glob
import os
import sys
import time

import requests

url, data = sys.argv[1].rstrip("/"), sys.argv[2]
limit = int(sys.argv[3]) if len(sys.argv) > 3 else None
files = sorted(glob.glob(os.path.join(data, "batch-*.pb")))[:limit]
session = requests.Session()
refused = 0
t0 = last = time.perf_counter()
for i, name in enumerate(files):
    with open(name, "rb") as f:
        body = f.read()
    r = session.post(url + "/v1/traces", data=body, headers={"Content-Type": "application/x-protobuf"}, timeout=120)
    if r.status_code != 200:
        refused += 1
    if (i + 1) % 1000 == 0:
        now = time.perf_counter()
        print(f"{i + 1} batches  {1000 * 1000 / (now - last):,.0f} spans/s  refused so far {refused}", flush=True)
        last = now
elapsed = time.perf_counter() - t0
print(f"total {len(files) * 1000 / elapsed:,.0f} spans/s over {elapsed:.1f}s, refused {refused}")

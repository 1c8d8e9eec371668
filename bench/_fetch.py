"""A small HTTP client in its own process (so its CPU is not the server's): GET one URL `--count`
times on one kept-alive connection and print one JSON object with the timings (time to the last
byte), sizes and statuses."""

from __future__ import annotations

import argparse
import http.client
import json
import time
import zlib
from urllib.parse import urlsplit


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("url")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--header", action="append", default=[], metavar="NAME:VALUE")
    p.add_argument("--timeout", type=float, default=60.0, help="per request")
    p.add_argument("--budget", type=float, default=600.0, help="stop after this many seconds in all")
    args = p.parse_args()
    u = urlsplit(args.url)
    headers = dict(h.split(":", 1) for h in args.header)
    headers = {k.strip(): v.strip() for k, v in headers.items()}
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=args.timeout)
    path = u.path + (f"?{u.query}" if u.query else "")
    times, statuses, sizes, raw_sizes = [], [], [], []
    deadline = time.monotonic() + args.budget
    for _ in range(args.count):
        if time.monotonic() > deadline:
            break
        t0 = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        times.append(time.perf_counter() - t0)
        statuses.append(resp.status)
        raw_sizes.append(len(body))
        if resp.getheader("Content-Encoding") == "gzip":
            body = zlib.decompress(body, 16 + zlib.MAX_WBITS)
        sizes.append(len(body))
    conn.close()
    print(json.dumps({"times": times, "statuses": statuses, "bytes": sizes, "wire_bytes": raw_sizes}))


if __name__ == "__main__":
    main()

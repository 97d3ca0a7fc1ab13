#!/usr/bin/env python3
"""Where a span index's bytes go (store/src/spanindex.rs, format versions 2-4).

Usage: bench/idxstat.py SEGMENT-traces.idx

Prints bytes per span of each section, and of the posting lists by kind of
term: service, (service, operation), and tags by key (span attributes summed).
A list shared by terms with the same spans counts once, for the first term
in the table's byte order.
"""
import collections
import struct
import sys

b = open(sys.argv[1], "rb").read()
ver, n, traces, nterms, blocks = struct.unpack_from("<5I", b, 4)
pos = 24
rank_row = (n * max(1, (n - 1).bit_length()) + 7) // 8 + 8
# From version 4 on the trace ids are left to the Parquet file.
sections = [("rank -> row", rank_row), ("trace rows", 4 * traces), ("trace ids", 16 * traces if ver < 4 else 0),
            ("block bases", 8 * blocks), ("block offsets", 4 * (blocks + 1))]
pos += sum(size for _, size in sections)
times = struct.unpack_from("<I", b, pos - 4)[0]
sections.append(("start times", times))
pos += times
table_at = pos
postings = collections.Counter()
seen = set()
for _ in range(nterms):
    (length,) = struct.unpack_from("<H", b, pos)
    term = b[pos + 2:pos + 2 + length]
    pos += 2 + length
    _count, offset, size = struct.unpack_from("<IQI", b, pos)
    pos += 16
    if offset in seen:  # a copy shared with an earlier term (counted there)
        continue
    seen.add(offset)
    kind = term[0]
    if kind == 1:
        what = "service"
    elif kind == 2:
        what = "operation"
    else:
        key = term[1:].split(b"=")[0].decode(errors="replace")
        derived = ("span.kind", "error", "otel.", "service.name")
        what = "tag " + key if key.startswith(derived) else "span and resource attributes"
    postings[what] += size
sections.append(("term table", pos - table_at))
sections.append(("posting lists", len(b) - 8 - pos))
print(f"{n} spans, {traces} traces, {nterms} terms, {len(b) / n:.2f} B/span in all")
for name, size in sections:
    print(f"  {name:16s} {size / n:6.2f} B/span")
print("posting lists by term:")
for what, size in postings.most_common():
    print(f"  {what:32s} {size / n:6.2f} B/span")

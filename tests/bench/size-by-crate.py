#!/usr/bin/env python3
"""Groups `twiggy top --format csv` rows of a wasm built with names by the
crate each function comes from; prints bytes per crate."""
import csv
import re
import sys
from collections import Counter

rows = csv.DictReader(sys.stdin)
by_crate = Counter()
total = 0
for r in rows:
    name, size = r["Name"], int(r["ShallowSize"])
    total += size
    if name.startswith("data[") or name.startswith('data segment'):
        crate = "(data: strings, tables)"
    elif "custom section" in name or "subsection" in name:
        crate = "(names and custom sections)"
    else:
        # The first path segment that looks like a crate: `<T as a::B>` -> a.
        m = re.search(r"([a-z_][a-z0-9_]*)(\[[0-9a-f]+\])?::", name)
        crate = m.group(1) if m else "(other)"
    by_crate[crate] += size
for crate, size in by_crate.most_common(15):
    print(f"  {crate:32} {size:9d} bytes  {100 * size / total:5.1f}%")
print(f"  {'total (before wasm-opt)':32} {total:9d} bytes")

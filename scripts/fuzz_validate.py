#!/usr/bin/env python3
"""Corruption check of `offrl dataset validate` (issue 24, #7): N copies of an offrl Parquet file,
each with 1-64 random bytes overwritten in its data pages (the footer left intact, so the file
still parses), and how many `validate` lets through.

    python3 scripts/fuzz_validate.py target/release/offrl data.parquet 300

A copy that passes loads exactly the original content (its checksum matched): the bytes hit
were page statistics or were overwritten with their own value. Standard library only.
"""
import os
import random
import struct
import subprocess
import sys
import tempfile

exe, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(src, "rb").read()
footer_len = struct.unpack("<I", data[-8:-4])[0]
body_end = len(data) - 8 - footer_len
rng = random.Random(0)
passed = named = 0
with tempfile.TemporaryDirectory() as tmp:
    for k in range(n):
        b = bytearray(data)
        at = rng.randrange(4, body_end - 64)
        for i in range(at, at + rng.choice([1, 4, 16, 64])):
            b[i] = rng.randrange(256)
        path = os.path.join(tmp, f"c{k}.parquet")
        open(path, "wb").write(b)
        r = subprocess.run([exe, "dataset", "validate", path], capture_output=True, text=True)
        if r.returncode == 0:
            passed += 1
        elif path in r.stderr:
            named += 1
print(f"{n} corrupted copies: validate passed {passed}, refused naming the file {named}, "
      f"refused otherwise {n - passed - named}")

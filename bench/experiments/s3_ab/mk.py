"""Create COUNT tiny objects (bodies recover-START.., keyed by sha256) in BUCKET.

Usage: python mk.py START COUNT BUCKET
"""

import hashlib
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
os.environ.update(
    json.loads((Path(os.environ.get("AB_DIR", "/tmp/s3ab")) / "env.json").read_text())
)
from bench_s3 import create_s3_objects  # noqa: E402

start, count, bucket = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
items = []
for i in range(start, start + count):
    body = b"recover-%d" % i
    items.append((hashlib.sha256(body).hexdigest(), body))
try:
    secs = create_s3_objects(os.environ["S3_ENDPOINT"], bucket, items, 16)
except Exception as e:
    print("err", e)
    raise
print(count, "in", secs, count / secs, "/s")

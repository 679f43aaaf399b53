"""Start a one-node RGW under DIR/rgw and keep it until SIGTERM; writes DIR/env.json.

Usage: python serve.py DIR &   (then mk.py, exp.py, rec.py with AB_DIR=DIR, run from each
code tree to compare: cd TREE && python .../exp.py --read --put)
"""

import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))
from helpers.rgw import RgwCluster  # noqa: E402

root = Path(sys.argv[1]) / "rgw"
c = RgwCluster(root, tls=False, store_bytes=6 << 30)
c.start()
env = {
    "S3_ENDPOINT": c.endpoint,
    "AWS_ACCESS_KEY_ID": c.access_key,
    "AWS_SECRET_ACCESS_KEY": c.secret_key,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
(Path(sys.argv[1]) / "env.json").write_text(json.dumps(env))
print("ready", c.endpoint, flush=True)
stop = False


def h(signum: int, frame: FrameType | None) -> None:
    global stop
    stop = True


signal.signal(signal.SIGTERM, h)
try:
    while not stop:
        time.sleep(1)
finally:
    c.stop()

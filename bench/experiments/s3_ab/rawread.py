"""Plain boto3: whole GET vs ranged GETs sequential vs parallel spans, alternating."""
import sys, os, json, time, random, statistics
from concurrent.futures import ThreadPoolExecutor
os.environ.update(json.load(open(os.path.join(os.environ.get("AB_DIR", "/tmp/s3ab"), "env.json"))))
import boto3, botocore.config
MiB = 1 << 20
c = boto3.session.Session(region_name="us-east-1").client("s3", endpoint_url=os.environ["S3_ENDPOINT"],
    config=botocore.config.Config(max_pool_connections=16, request_checksum_calculation="when_required",
        response_checksum_validation="when_required", tcp_keepalive=True, s3={"addressing_style": "path"}))
B = "rawread"; K = "big"; N = int(sys.argv[1]) * MiB
try:
    c.create_bucket(Bucket=B)
except Exception as e:
    print(e)
import io; c.upload_fileobj(io.BytesIO(os.urandom(N)), B, K)
def whole():
    t0 = time.perf_counter(); body = c.get_object(Bucket=B, Key=K)["Body"]; got = 0
    while p := body.read(MiB): got += len(p)
    return N / MiB / (time.perf_counter() - t0)
def get(start, size, piece=MiB):
    body = c.get_object(Bucket=B, Key=K, Range=f"bytes={start}-{start+size-1}")["Body"]
    got = 0
    while p := body.read(piece): got += len(p)
    return got
def ranged(span, par):
    t0 = time.perf_counter()
    with ThreadPoolExecutor(par) as pool:
        got = sum(pool.map(lambda s: get(s, span), range(0, N, span)))
    assert got == N
    return N / MiB / (time.perf_counter() - t0)
cases = {"whole": whole}
for span in (4, 8, 16):
    for par in (1, 2, 4):
        cases[f"span{span}x{par}"] = (lambda s=span, p=par: ranged(s * MiB, p))
res = {k: [] for k in cases}
for r in range(int(sys.argv[2])):
    for k, f in cases.items():
        res[k].append(f())
for k, v in res.items():
    print(f"{k:12s} {statistics.median(v):7.0f}  {' '.join(f'{x:.0f}' for x in v)}")

import sys, os, json, time, tempfile, shutil, threading
sys.path.insert(0, os.getcwd())
os.environ.update(json.load(open(os.path.join(os.environ.get("AB_DIR", "/tmp/s3ab"), "env.json"))))
from pathlib import Path
import trio
from axonfs.axon import Axon
from axonfs.backends.s3 import S3Backend, S3Config
from axonfs.backends import cache as cachemod
MiB = 1 << 20
T = {"put": 0.0, "readcall": 0.0}
orig_put = cachemod.BlockCache.put
def put(self, *a):
    t = time.perf_counter(); orig_put(self, *a); T["put"] += time.perf_counter() - t
cachemod.BlockCache.put = put
async def main():
    work = Path(tempfile.mkdtemp(dir=os.environ.get("AB_DIR", "/tmp/s3ab")))
    be = S3Backend(S3Config(bucket="rawread", endpoint_url=os.environ["S3_ENDPOINT"], cache_size=int(os.environ.get("CACHE", 2 << 30)), readahead_blocks=int(os.environ.get("RA", 16))), cache_dir=work / "c")
    from axonfs.hashing import Sha256
    # read the 'big' object of rawread via the backend directly, as Axon.get does (4 MiB pieces, thread per piece)
    size = be.client.head_object(Bucket="rawread", Key="big")["ContentLength"]
    from axonfs.backends.readahead import BlockReader
    for r in range(int(os.environ.get("RUNS", 3))):
        be.cache.discard("big")
        T["put"] = 0; T["readcall"] = 0
        reader = BlockReader(be.fetcher, "big", size)
        t0 = time.perf_counter(); off = 0; wait = 0
        while off < size:
            a = time.perf_counter()
            piece = await trio.to_thread.run_sync(reader.read, off, 4 * MiB)
            wait += time.perf_counter() - a
            off += len(piece)
        tot = time.perf_counter() - t0
        t1 = time.perf_counter(); body = be.client.get_object(Bucket="rawread", Key="big")["Body"]
        while body.read(MiB): pass
        raw = time.perf_counter() - t1
        print(f"axon {size/MiB/tot:.0f} MiB/s  raw {size/MiB/raw:.0f} MiB/s ratio {raw/tot:.2f}  cache.put total {T['put']:.3f}s of {tot:.3f}s  reader wait {wait:.3f}  gets {be.stats().requests}")
    be.close(); shutil.rmtree(work)
trio.run(main)

import collections
import re
import sys

path = sys.argv[1]
must = sys.argv[2] if len(sys.argv) > 2 else ""
top = int(sys.argv[3]) if len(sys.argv) > 3 else 25
incl: collections.Counter[str] = collections.Counter()
leaf: collections.Counter[str] = collections.Counter()
threads: collections.Counter[str] = collections.Counter()
total = 0
with open(path) as profile:
    lines = profile.read().splitlines()
for line in lines:
    stack, _, count = line.rstrip().rpartition(" ")
    n = int(count)
    if must and not all(m in stack for m in must.split("&")):
        continue
    frames = stack.split(";")
    th = frames[0]
    frames = frames[1:]
    threads["Main" if "MainThread" in th else "worker"] += n
    total += n
    names = [re.sub(r" \((.*?):\d+\)", r" (\1)", f) for f in frames]
    for f in set(names):
        incl[f] += n
    if frames:
        leaf[frames[-1]] += n
print("total", total, dict(threads))
print("-- inclusive")
for f, c in incl.most_common(top):
    print(f"{c:7d} {100 * c / total:5.1f}%  {f}")
print("-- leaf (with line)")
for f, c in leaf.most_common(top):
    print(f"{c:7d} {100 * c / total:5.1f}%  {f}")

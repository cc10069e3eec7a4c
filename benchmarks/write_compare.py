"""Single-key writes of this checkout against another copy of the package, interleaved in fresh processes.

    python benchmarks/write_compare.py OTHER_ROOT [durability]

OTHER_ROOT holds a PersistDict/ package (e.g. `git archive REF PersistDict | tar -x -C OTHER_ROOT`).
Prints sets/s per round for each and the median ratio (this checkout / other). A quick check between
full runs of run.py --baseline; it does not replace them.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from PersistDict import PersistDict
d = PersistDict(tempfile.mkdtemp(), durability=sys.argv[2], background_thread="disabled")
value = "x" * 100
for i in range(200):
    d[f"warm{i}"] = value
n = 0
start = time.perf_counter()
while time.perf_counter() - start < 1.0:
    for _ in range(20):
        d[f"k{n}"] = value
        n += 1
print(n / (time.perf_counter() - start))
d.close()
"""


def rate(root: str, durability: str) -> float:
    out = subprocess.run([sys.executable, "-c", CHILD, root, durability], capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    other, durability = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "fast")
    here = str(Path(__file__).resolve().parent.parent)
    ratios = []
    for round_ in range(5):
        ours, theirs = rate(here, durability), rate(other, durability)
        ratios.append(ours / theirs)
        print(f"round {round_}: this {ours:,.0f}/s  other {theirs:,.0f}/s  ratio {ours / theirs:.2f}")
    print(f"median ratio (this / other), durability={durability}: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()

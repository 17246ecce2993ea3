"""``python -m benchmarks.archives [--entries 1500000]``: what a hostile zip costs the server before it is refused.

An upload arrives as bytes in memory. The archives here are built by multiplying one directory entry, so a
1.5-million-entry archive (about 85 MB, the shape of the "empty entries" zip bomb) takes a blink to make:

- ``classic``: the entries behind a classic end record (its 16-bit count saturated at 65,535);
- ``zip64``: the same behind a zip64 end record, which states the full count;
- ``at the limit``: ``MAX_ZIP_MEMBERS - 1000`` entries, which zipfile must list (the dearest archive that is
  not refused by its count).

Each goes through the two doors a stranger has, the model import (``import_model``, as "Your model" and
``python -m explorer import`` call it) and the dataset upload (``load_user_dataset``), each in a fresh process
of its own. Printed per case: the seconds to the answer, the answer, and the process's peak resident memory
above what it held with the bytes loaded (Linux's VmHWM, reset just before the call), against the budget of twice the file's size plus 50 MB.
"""

from __future__ import annotations

import argparse
import json
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from explorer.untrusted.archive import MAX_ZIP_MEMBERS

NAME = b"0000000.png"
LOCAL = struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(NAME), 0) + NAME
ENTRY = struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(NAME), 0, 0, 0, 0, 0, 0) + NAME


def archive(n: int, *, zip64: bool) -> bytes:
    """One empty member listed ``n`` times, behind a classic or a zip64 end record."""
    directory = ENTRY * n
    at, end = len(LOCAL), b""
    stated, size, offset = min(n, 0xFFFF), len(directory), len(LOCAL)
    if zip64:
        end = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(directory), at)
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, at + len(directory), 1)
        stated, size, offset = 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF
    return LOCAL + directory + end + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, stated, stated, size, offset, 0)


# Run in a fresh process: the file is read, the peak so far noted, then the door is timed.
CHILD = """
import json, sys, time
door, path = sys.argv[1], sys.argv[2]
from explorer.errors import ExplorerError
from explorer.importers import import_model
from explorer.data import load_user_dataset
def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":"))
data = open(path, "rb").read()
before = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # the peak (VmHWM) starts again from now
t0 = time.perf_counter()
try:
    if door == "model":
        import_model([("upload.zip", data)])
    else:
        load_user_dataset(data, filename="upload.zip", input_shape=(1, 28, 28))
    answer = "accepted"
except ExplorerError as exc:
    answer = str(exc)
seconds = time.perf_counter() - t0
peak = status("VmHWM")
print(json.dumps({"seconds": seconds, "answer": answer, "extra_mb": (peak - before) / 1024}))
"""


def measure(door: str, path: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, door, str(path)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.archives", description=__doc__.split("\n\n")[0])
    parser.add_argument("--entries", type=int, default=1_500_000, help="entries of the hostile archives")
    args = parser.parse_args(argv)
    cases = {
        "classic": archive(args.entries, zip64=False),
        "zip64": archive(args.entries, zip64=True),
        "at the limit": archive(MAX_ZIP_MEMBERS - 1000, zip64=True),
    }
    print(f"{'archive':<14} {'MB':>6} {'door':<8} {'seconds':>8} {'extra MB':>9} {'budget MB':>10}  answer")
    over = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in cases.items():
            path = Path(tmp, "upload.zip")
            path.write_bytes(data)
            size_mb = len(data) / 2**20
            budget = 2 * size_mb + 50
            for door in ("model", "dataset"):
                r = measure(door, path)
                over += r["extra_mb"] > budget
                print(
                    f"{name:<14} {size_mb:6.1f} {door:<8} {r['seconds']:8.3f} {r['extra_mb']:9.1f} {budget:10.1f}  "
                    f"{r['answer'][:90]}",
                    flush=True,
                )
    print(f"\n{over} case(s) over the memory budget")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""DEV ONLY: write a synthetic full-size VideoCrafter2 checkpoint (no torch needed).

Random f32 weights at the real shapes of the 2,039 tensors listed in a key table
(../shared/research/videocrafter2-state-dict-keys.tsv: key, shape like 320x4x3x3 or
"scalar", dtype), written as a torch.save-style zip (ZIP64, stored entries aligned to 64 bytes,
data descriptors, data.pkl pickled with protocol 2 exactly as torch pickles tensors:
_rebuild_tensor_v2 over ('storage', torch.FloatStorage, key, 'cpu', numel) persistent ids).
The real file is ~7.4 GB; the script streams it with a few MB of memory.

It exists to measure the Swift readers on a realistic file (time, peak RSS) without the real
weights. Nothing in the product uses it. Delete the output when done: disks are shared.

    scripts/dev/synth-vc2-ckpt.py KEYS.tsv OUT.ckpt [--wrapper state_dict|module|bare] [--seed N]
"""
import argparse
import collections
import os
import pickle
import random
import struct
import sys
import types
import zlib
from array import array

# --- stand-ins for the torch globals the pickle names (only their names are pickled) ----------
_torch = types.ModuleType("torch")
_utils = types.ModuleType("torch._utils")


class FloatStorage:  # pickled as GLOBAL 'torch FloatStorage'
    pass


FloatStorage.__module__ = "torch"


def _rebuild_tensor_v2(*args):  # pickled as GLOBAL 'torch._utils _rebuild_tensor_v2'
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
_torch.FloatStorage = FloatStorage
_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
sys.modules.setdefault("torch", _torch)
sys.modules.setdefault("torch._utils", _utils)


class StorageRef:
    def __init__(self, key, numel):
        self.key, self.numel = key, numel


class FakeTensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce_ex__(self, protocol):
        stride, acc = [], 1
        for d in reversed(self.shape):
            stride.insert(0, acc)
            acc *= d
        return (_rebuild_tensor_v2,
                (self.storage, 0, tuple(self.shape), tuple(stride), False, collections.OrderedDict()))


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, StorageRef):
            return ("storage", FloatStorage, obj.key, "cpu", obj.numel)
        return None


# --- zip writing (torch layout) ------------------------------------------------------------------
class ZipOut:
    def __init__(self, f):
        self.f, self.central, self.count = f, [], 0

    def _pos(self):
        return self.f.tell()

    def add(self, name, chunks):
        """Writes one stored entry from an iterable of byte chunks (CRC computed on the fly)."""
        nb = name.encode()
        offset = self._pos()
        base = offset + 30 + len(nb) + 4
        pad = (64 - base % 64) % 64
        extra = b"FB" + struct.pack("<H", pad) + b"Z" * pad
        # Local header: bit 3 (sizes and CRC in the data descriptor), bit 11 (UTF-8 names).
        self.f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0x0808, 0, 0, 0x2100, 0, 0, 0, len(nb), len(extra)))
        self.f.write(nb + extra)
        crc, size = 0, 0
        for c in chunks:
            crc = zlib.crc32(c, crc)
            size += len(c)
            self.f.write(c)
        self.f.write(struct.pack("<IIII", 0x08074B50, crc, size & 0xFFFFFFFF, size & 0xFFFFFFFF))
        self.central.append((nb, crc, size, offset))

    def close(self):
        cd_start = self._pos()
        for nb, crc, size, offset in self.central:
            big = size >= 0xFFFFFFFF or offset >= 0xFFFFFFFF
            extra = b""
            if big:
                extra = struct.pack("<HHQQQ", 1, 24, size, size, offset)
            s32 = 0xFFFFFFFF if big else size
            o32 = 0xFFFFFFFF if big else offset
            self.f.write(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 0x031E, 45, 0x0808, 0, 0, 0x2100,
                                     crc, s32, s32, len(nb), len(extra), 0, 0, 0, 0, o32))
            self.f.write(nb + extra)
        cd_end = self._pos()
        n = len(self.central)
        rec = cd_end
        self.f.write(struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 0x031E, 45, 0, 0, n, n, cd_end - cd_start, cd_start))
        self.f.write(struct.pack("<IIQI", 0x07064B50, 0, rec, 1))
        self.f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, min(n, 0xFFFF), min(n, 0xFFFF),
                                 min(cd_end - cd_start, 0xFFFFFFFF), min(cd_start, 0xFFFFFFFF), 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("keys")
    ap.add_argument("out")
    ap.add_argument("--wrapper", choices=["state_dict", "module", "bare"], default="state_dict")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=0, help="only the first N tensors (quick checks)")
    a = ap.parse_args()

    rows = []
    with open(a.keys) as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header[:2] == ["key", "shape"], header
        for line in f:
            k, shape, *_ = line.rstrip("\n").split("\t")
            dims = [] if shape == "scalar" else [int(x) for x in shape.split("x")]
            rows.append((k, dims))
    if a.limit:
        rows = rows[: a.limit]

    rng = random.Random(a.seed)
    pool = array("f", (rng.gauss(0.0, 0.02) for _ in range(1 << 20))).tobytes()  # 4 MiB of N(0, 0.02)
    pool2 = pool + pool

    state = collections.OrderedDict()
    for i, (k, dims) in enumerate(rows):
        numel = 1
        for d in dims:
            numel *= d
        name = ("_forward_module." + k) if a.wrapper == "module" else k
        state[name] = FakeTensor(StorageRef(str(i), numel), dims)
    if a.wrapper == "state_dict":
        obj = {"epoch": 0, "global_step": 0, "state_dict": state}
    elif a.wrapper == "module":
        obj = {"module": state}
    else:
        obj = state

    import io
    buf = io.BytesIO()
    TorchPickler(buf, protocol=2).dump(obj)
    pkl = buf.getvalue()

    folder = os.path.splitext(os.path.basename(a.out))[0]
    tmp = a.out + ".tmp"
    total = 0
    with open(tmp, "wb") as f:
        z = ZipOut(f)
        z.add(folder + "/data.pkl", [pkl])
        z.add(folder + "/byteorder", [b"little"])
        for i, (k, dims) in enumerate(rows):
            numel = 1
            for d in dims:
                numel *= d
            nbytes = numel * 4
            start = rng.randrange(0, len(pool) // 4) * 4

            def chunks(nbytes=nbytes, start=start):
                left, pos = nbytes, start
                while left:
                    n = min(left, len(pool))
                    yield pool2[pos: pos + n]
                    left -= n
            z.add(f"{folder}/data/{i}", chunks())
            total += nbytes
        z.add(folder + "/version", [b"3\n"])
        z.close()
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, a.out)
    print(f"{a.out}: {len(rows)} tensors, {total} bytes of weights, {os.path.getsize(a.out)} bytes, "
          f"data.pkl {len(pkl)} bytes, folder '{folder}', wrapper {a.wrapper}")


if __name__ == "__main__":
    main()

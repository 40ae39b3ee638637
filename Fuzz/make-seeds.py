#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (Fuzz/corpus/<target>/), a few small valid inputs
each, plus libFuzzer dictionaries (Fuzz/dict/<target>.dict). Python stdlib only, deterministic;
the outputs are committed, so run it only to change the seeds (docs/fuzzing.md).

    Fuzz/make-seeds.py            # from the repository root
"""
import collections
import io
import json
import os
import pickle
import struct
import sys
import types
import zipfile

ROOT = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- safetensors ---------------------------------------------------------------------------------
def safetensors(tensors, metadata=None, pad=True):
    """tensors: list of (name, dtype, shape, bytes)."""
    header, pos, data = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dt, shape, b in tensors:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [pos, pos + len(b)]}
        pos += len(b)
        data += b
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


def f32(*xs):
    return struct.pack("<%df" % len(xs), *xs)


put("safetensors", "empty", safetensors([]))
put("safetensors", "metadata-only", safetensors([], {"format": "pt", "note": "caf\u00e9"}))
put("safetensors", "f32-2x3", safetensors([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6))], {"format": "pt"}))
put("safetensors", "all-dtypes", safetensors([
    ("a.f16", "F16", [2], struct.pack("<2e", 1.0, -2.0)),
    ("b.bf16", "BF16", [2], b"\x80\x3f\x00\xc0"),
    ("c.i64", "I64", [1], struct.pack("<q", -7)),
    ("d.u8", "U8", [3], b"\x01\x02\x03"),
    ("e.bool", "BOOL", [2], b"\x00\x01"),
    ("f.f64", "F64", [1], struct.pack("<d", 0.5)),
    ("g.f8", "F8_E4M3", [2], b"\x38\x40"),
    ("h.f4", "F4", [2], b"\x21"),
    ("i.i32", "I32", [], struct.pack("<i", 3)),
    ("j.empty", "F32", [0, 4], b""),
    ("k.f32", "F32", [1, 1, 2], f32(0.25, -0.25)),
]))
put("safetensors", "unaligned", safetensors([("u8", "U8", [1], b"\x09"), ("f32", "F32", [2], f32(1.5, 2.5))], pad=False))
put("safetensors", "nested-names", safetensors([
    ("model.diffusion_model.input_blocks.0.0.weight", "F32", [2, 1, 1, 1], f32(1, 2)),
    ("cond_stage_model.model.positional_embedding", "F16", [1, 2], struct.pack("<2e", 0.5, 0.25)),
    ("\u00fcnicode \\\"esc\"", "U8", [1], b"\x00"),
]))

# --- torch checkpoints (zip) and their pickles ---------------------------------------------------
_torch = types.ModuleType("torch")
_utils = types.ModuleType("torch._utils")
_param = types.ModuleType("torch.nn.parameter")


def _mk_storage(name):
    c = type(name, (), {})
    c.__module__ = "torch"
    setattr(_torch, name, c)
    return c


FloatStorage, HalfStorage, LongStorage, BFloat16Storage = (
    _mk_storage(n) for n in ("FloatStorage", "HalfStorage", "LongStorage", "BFloat16Storage"))


def _rebuild_tensor_v2(*a):
    raise RuntimeError("never called")


def _rebuild_parameter(*a):
    raise RuntimeError("never called")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_parameter.__module__ = "torch._utils"
_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
_utils._rebuild_parameter = _rebuild_parameter
sys.modules.setdefault("torch", _torch)
sys.modules.setdefault("torch._utils", _utils)


class Storage:
    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class T:
    def __init__(self, storage, shape, offset=0, stride=None, param=False):
        self.storage, self.shape, self.offset, self.param = storage, shape, offset, param
        if stride is None:
            stride, acc = [], 1
            for d in reversed(shape):
                stride.insert(0, acc)
                acc *= d
        self.stride = stride

    def __reduce_ex__(self, protocol):
        t = (_rebuild_tensor_v2, (self.storage, self.offset, tuple(self.shape), tuple(self.stride),
                                  False, collections.OrderedDict()))
        if self.param:
            inner = T(self.storage, self.shape, self.offset, self.stride)
            return (_rebuild_parameter, (inner, True, collections.OrderedDict()))
        return t


class P(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


def pkl(obj, protocol=2):
    b = io.BytesIO()
    P(b, protocol=protocol).dump(obj)
    return b.getvalue()


def ckpt(obj, storages, folder="archive", zip64=False):
    """storages: {key: bytes}. Stored entries, like torch.save (without its alignment padding)."""
    b = io.BytesIO()
    with zipfile.ZipFile(b, "w", zipfile.ZIP_STORED) as z:
        def add(name, data):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            with z.open(info, "w", force_zip64=zip64) as f:
                f.write(data)
        add(folder + "/data.pkl", pkl(obj))
        add(folder + "/byteorder", b"little")
        for k, v in storages.items():
            add(folder + "/data/" + k, v)
        add(folder + "/version", b"3\n")
    return b.getvalue()


s0 = Storage(FloatStorage, "0", 4)
s1 = Storage(HalfStorage, "1", 8)
s2 = Storage(LongStorage, "2", 2)
data = {"0": f32(1, 2, 3, 4), "1": struct.pack("<8e", *range(8)), "2": struct.pack("<2q", 5, -5)}
bare = collections.OrderedDict([("w", T(s0, [2, 2])), ("h", T(s1, [8])), ("l", T(s2, [2]))])
put("zip", "bare", ckpt(bare, data))
put("zip", "state-dict", ckpt({"state_dict": collections.OrderedDict([
    ("model.a", T(s0, [4])), ("model.b", T(s0, [2], offset=2)), ("model.p", T(s1, [2, 4], param=True))]),
    "epoch": 3, "global_step": 100}, data, folder="last"))
put("zip", "deepspeed", ckpt({"module": collections.OrderedDict([
    ("_forward_module.x", T(s0, [1, 4])), ("_forward_module.y", T(s2, [2, 1]))])}, data))
put("zip", "zip64", ckpt(bare, data, zip64=True))
put("zip", "non-tensors", ckpt(collections.OrderedDict([
    ("t", T(s0, [4])), ("n", 7), ("s", "text"), ("f", 1.5), ("none", None), ("lst", [1, (2, 3)])]), data))

# pickles for the pickle target: storages 0..3 hold 16, 64, 256, 0 bytes (FuzzHarness.pickle).
# "plain-*" seeds exercise the unpickler on plain values of every protocol; the checkpoint layer
# accepts them as a state dict without tensors or rejects them (a call outside the allowlist).
p0 = Storage(FloatStorage, "0", 4)
p1 = Storage(HalfStorage, "1", 32)
p2 = Storage(FloatStorage, "2", 64)
p3 = Storage(BFloat16Storage, "3", 0)
put("pickle", "bare", pkl(collections.OrderedDict([("a", T(p0, [2, 2])), ("b", T(p1, [4, 8])), ("c", T(p2, [64]))])))
put("pickle", "state-dict", pkl({"state_dict": collections.OrderedDict([
    ("x", T(p2, [2, 4], offset=8)), ("y", T(p3, [0])), ("z", T(p0, [4], param=True))]), "step": 1}))
put("pickle", "deepspeed", pkl({"module": {"_forward_module.w": T(p1, [1, 32]), "_forward_module.v": T(p0, [4])}}))
put("pickle", "shared-memo", pkl(collections.OrderedDict([("a", T(p0, [4])), ("b", T(p0, [2], offset=2)), ("c", T(p0, [1, 1], offset=3))])))
for proto in range(0, 6):
    put("pickle", "plain-values-proto%d" % proto, pickle.dumps(
        {"ints": [0, 1, -1, 255, 65535, 2**31, -2**40, 2**70], "floats": [0.5, -1e300], "s": "\u00e9t\u00e9",
         "b": b"\x00\xff", "t": (), "t1": (1,), "t3": (1, 2, 3), "set": {1, 2}, "fs": frozenset([3]),
         "none": None, "bool": [True, False], "nested": {"d": [{}]}}, protocol=proto))

# --- dictionaries ---------------------------------------------------------------------------------
os.makedirs(os.path.join(ROOT, "dict"), exist_ok=True)


def dictionary(target, tokens):
    with open(os.path.join(ROOT, "dict", target + ".dict"), "w") as f:
        for t in tokens:
            f.write('"%s"\n' % "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "\\x%02X" % ord(c) for c in t))


dtypes = ["BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
          "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64"]
dictionary("safetensors", ['"dtype"', '"shape"', '"data_offsets"', '"__metadata__"', "{", "}", "[", "]", ":",
                           ",", "null", "true", "18446744073709551615", "\\u0000", "\\ud800"] +
           ['"%s"' % d for d in dtypes])
pickle_tokens = ["torch._utils\n_rebuild_tensor_v2\n", "torch\nFloatStorage\n", "torch\nHalfStorage\n",
                 "collections\nOrderedDict\n", "torch._utils\n_rebuild_parameter\n", "storage", "cpu",
                 "state_dict", "module", "_forward_module.", "\x80\x02", "\x80\x05", "\x95", "(", "t", "R", "Q",
                 "}", "u", "s", "q", "h", "J", "K", "M", "\x8a", "X", "\x8c", "\x94", "\x85", "\x86", "\x87"]
dictionary("pickle", pickle_tokens)
dictionary("zip", ["PK\x03\x04", "PK\x01\x02", "PK\x05\x06", "PK\x06\x06", "PK\x06\x07", "\xff\xff\xff\xff",
                   "\x01\x00", "archive/data.pkl", "archive/data/0", "archive/byteorder", "little", "big"] +
           pickle_tokens[:4])

# --- tokenizer: prompts from the open_clip reference cases (fixtures/tokenizer) -------------------
with open(os.path.join(ROOT, "..", "fixtures", "tokenizer", "open_clip_cases.json"), encoding="utf-8") as f:
    cases = [c["text"] for c in json.load(f)["cases"] if 0 < len(c["text"].encode()) <= 600]
step = max(1, len(cases) // 24)
for i, text in enumerate(cases[::step][:24]):
    put("tokenizer", "case-%02d" % i, text.encode("utf-8"))
put("tokenizer", "long-prompt", ("a photo of an astronaut riding a horse on mars, 4k, highly detailed, " * 8).encode())
put("tokenizer", "specials", "<start_of_text>hello<end_of_text> &amp; &#x1F600; \u00c3\u00a9t\u00c3\u00a9".encode())

# --- LoRA: small subsets (whole modules) of the tiny model's LoRA fixtures -------------------------
def read_safetensors(path):
    with open(path, "rb") as f:
        b = f.read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.pop("__metadata__", None)
    return meta, {k: (v["dtype"], v["shape"], b[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]]) for k, v in h.items()}


def module_of(key):
    for suffix in (".alpha", ".lora_down.weight", ".lora_up.weight", ".lora_A.weight", ".lora_B.weight", ".lora_mid.weight"):
        if key.endswith(suffix):
            return key[:-len(suffix)]
    return key


lora_dir = os.path.join(ROOT, "..", "fixtures", "vc2-tiny-a", "lora")
for src, picks in (("kohya", [0, 1, 5]), ("peft", [0, 1])):
    meta, tensors = read_safetensors(os.path.join(lora_dir, src + ".safetensors"))
    modules = []
    for k in tensors:
        if module_of(k) not in modules:
            modules.append(module_of(k))
    small = [m for m in modules if sum(len(v[2]) for k, v in tensors.items() if module_of(k) == m) <= 1100]
    for i in picks:
        if i >= len(small):
            continue
        chosen = [(k, v[0], v[1], v[2]) for k, v in tensors.items() if module_of(k) == small[i]]
        put("lora", "%s-%d" % (src, i), safetensors(chosen, meta))
    chosen = [(k, v[0], v[1], v[2]) for k, v in tensors.items() if module_of(k) in small[:3]]
    put("lora", "%s-three" % src, safetensors(chosen, meta))

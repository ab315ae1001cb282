"""Writes one parity case with nothing but the Python standard library: verl's kl_penalty(logprob, ref_logprob,
"k1") on a 2 x 3 batch, its per-token output and the gradient of kld.mean(). Usage: python3 write_case_stdlib.py OUT.safetensors"""

import json
import struct
import sys

logprob = [-1.25, -0.5, -2.0, -3.0, -0.125, -1.0]
ref_logprob = [-1.0, -0.75, -2.5, -2.0, -0.25, -1.0]
kld = [a - b for a, b in zip(logprob, ref_logprob)]  # k1: logprob - ref_logprob (exact in float32 here)
grad = [1.0 / len(kld)] * len(kld)  # d kld.mean() / d logprob

tensors = [("in.logprob", logprob), ("in.ref_logprob", ref_logprob), ("out.kld", kld), ("out.grad_logprob", grad)]
params = {"kl_penalty": "k1", "grad_of": "kld.mean() w.r.t. logprob"}
header = {"__metadata__": {"function": "verl.trainer.ppo.core_algos.kl_penalty", "group": "kl_penalty",
                           "params": json.dumps(params), "dtype": "f32"}}
data = b""
for name, values in tensors:
    raw = struct.pack("<%df" % len(values), *values)  # little-endian float32
    header[name] = {"dtype": "F32", "shape": [2, 3], "data_offsets": [len(data), len(data) + len(raw)]}
    data += raw
text = json.dumps(header).encode("utf-8")
text += b" " * (-len(text) % 8)  # pad the header to a multiple of 8 bytes
with open(sys.argv[1], "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + data)

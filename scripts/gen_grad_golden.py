#!/usr/bin/env python3
"""Golden-gradient fixture generator for `oar-autograd` (PyTorch is the reference).

This script is the source of the committed fixture

    autograd/tests/golden/grads.safetensors

read by the integration test `autograd/tests/golden_grads.rs`.  CI does not need
PyTorch: it only reads the committed file.  Re-run this script (and commit the file)
whenever a case is added or changed.

How to run (from the repository root):

    /root/venv-ref/bin/python scripts/gen_grad_golden.py     # the dev box's reference venv
    # in general:  pip install torch numpy safetensors  &&  python scripts/gen_grad_golden.py

Output is deterministic (byte-identical across runs): each case draws its inputs from its
own generator seeded from a CRC32 of its name.

Each case is a small composite function (a network, attention, a view-heavy expression, a
mixed-precision chain, a gradient penalty).  Tensor keys are "<case>.<name>":

    <case>.<input>        every input and parameter, in the dtype the Rust test uses
    <case>.loss           the scalar loss
    <case>.grad.<input>   the gradient of the loss with respect to <input>

plus case-specific extras (documented at each case).  The Rust test rebuilds each function
from Oar ops, so the structure of the functions lives in both files: keep them in sync.

Reference values.  f64 cases are computed in f64.  f32 cases are computed in f64 from the
(f32) inputs and rounded to f32 once, so the expected values carry no f32 round-off of
their own; the script also runs the same function natively in f32 and checks that PyTorch's
own f32 result is within the tolerance the Rust test uses (so the tolerance is achievable
by an ordinary f32 implementation).  The bf16/f16 cases store PyTorch's native half-precision
gradients (the brief of those cases is "the gradient comes back in the half dtype").
"""

import math
import os
import sys
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "autograd", "tests", "golden")

torch.set_num_threads(1)  # reproducible reduction order
torch.use_deterministic_algorithms(True)

F32, F64, F16, BF16, I64 = torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64

# Relative tolerance per dtype, as used by the Rust test: an element passes when
# |got - want| <= tol * (|want| + max|want over the tensor|).
TOL = {F64: 1e-10, F32: 1e-4, F16: 1e-2, BF16: 1e-2}

TENSORS = {}


class Rng:
    """Per-case random source (seeded from the case name)."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def randn(self, *shape, dtype=F32, scale=1.0):
        return (torch.randn(shape, generator=self.g, dtype=F64) * scale).to(dtype)

    def uniform(self, lo, hi, *shape, dtype=F32):
        return (torch.rand(shape, generator=self.g, dtype=F64) * (hi - lo) + lo).to(dtype)

    def randint(self, lo, hi, *shape):
        return torch.randint(lo, hi, shape, generator=self.g, dtype=I64)

    def linear(self, fan_in, *shape, dtype=F32):
        """PyTorch's default nn.Linear / nn.Conv2d init distribution, U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
        b = 1.0 / math.sqrt(fan_in)
        return self.uniform(-b, b, *shape, dtype=dtype)


def put(key, t):
    assert key not in TENSORS, key
    TENSORS[key] = t.detach().clone().contiguous()


def max_err(got, want):
    """max |got - want| / (|want| + max|want|), the quantity the Rust test bounds by TOL."""
    got, want = got.to(F64), want.to(F64)
    scale = want.abs().max()
    return ((got - want).abs() / (want.abs() + scale).clamp_min(1e-300)).max().item()


def evaluate(fn, inputs, grad_names, dtype=None):
    """Runs fn(**inputs) -> loss (casting float inputs to `dtype` when given) and
    returns (loss, {name: grad})."""
    ts = {}
    for k, v in inputs.items():
        t = v.detach().clone()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        if k in grad_names:
            t.requires_grad_(True)
        ts[k] = t
    loss = fn(**ts)
    loss.backward()
    return loss.detach(), {k: ts[k].grad for k in grad_names}


def case(name, fn, inputs, grad_names, dtype):
    """Stores inputs, loss and gradients of `fn`; float inputs are stored in `dtype`.

    f64: computed in f64.  f32: computed in f64 and rounded (native f32 checked against it)."""
    inputs = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in inputs.items()}
    for k, v in inputs.items():
        put(f"{name}.{k}", v)
    loss, grads = evaluate(fn, inputs, grad_names, dtype=F64)
    put(f"{name}.loss", loss.to(dtype))
    for k in grad_names:
        put(f"{name}.grad.{k}", grads[k].to(dtype))
    if dtype != F64:
        nloss, ngrads = evaluate(fn, inputs, grad_names)
        errs = {"loss": max_err(nloss, loss.to(dtype))}
        errs.update({k: max_err(ngrads[k], grads[k].to(dtype)) for k in grad_names})
        worst = max(errs.values())
        print(f"  {name}: torch native {dtype} vs f64 reference, worst {worst:.2e} ({max(errs, key=errs.get)})")
        assert worst <= TOL[dtype], (name, errs)
    return loss, grads


# ----------------------------------------------------------------------------- cases


def linear(x, w, b):
    return x @ w.t() + b


def gen_mlp():
    """a. MLP + cross-entropy: Linear(20, 32) -> ReLU -> Linear(32, 10), mean cross-entropy."""
    name = "mlp_ce_f32"
    r = Rng(name)
    inputs = {
        "x": r.randn(8, 20),
        "w1": r.linear(20, 32, 20),
        "b1": r.linear(20, 32),
        "w2": r.linear(32, 10, 32),
        "b2": r.linear(32, 10),
        "targets": r.randint(0, 10, 8),
    }

    def fn(x, w1, b1, w2, b2, targets):
        logits = linear(torch.relu(linear(x, w1, b1)), w2, b2)
        return F.cross_entropy(logits, targets)

    case(name, fn, inputs, ["x", "w1", "b1", "w2", "b2"], F32)


def gen_cnn():
    """b. SimpleCNN: Conv2d(3, 10, 3) -> ReLU -> MaxPool2d(2) -> flatten -> Linear(2250, 10), cross-entropy."""
    name = "cnn_f32"
    r = Rng(name)
    inputs = {
        "x": r.randn(4, 3, 32, 32),
        "conv_w": r.linear(27, 10, 3, 3, 3),
        "conv_b": r.linear(27, 10),
        "fc_w": r.linear(2250, 10, 2250),
        "fc_b": r.linear(2250, 10),
        "targets": r.randint(0, 10, 4),
    }

    def fn(x, conv_w, conv_b, fc_w, fc_b, targets):
        h = F.max_pool2d(torch.relu(F.conv2d(x, conv_w, conv_b)), 2)
        logits = linear(h.flatten(1), fc_w, fc_b)
        return F.cross_entropy(logits, targets)

    case(name, fn, inputs, ["x", "conv_w", "conv_b", "fc_w", "fc_b"], F32)


def gen_attention():
    """c. Softmax attention: out = softmax(q k^T / sqrt(8), -1) v, loss = sum(out * r)."""
    for dtype, suffix in ((F64, "f64"), (F32, "f32")):
        name = f"attention_{suffix}"
        rng = Rng(name)
        inputs = {
            "q": rng.randn(2, 4, 8),
            "k": rng.randn(2, 4, 8),
            "v": rng.randn(2, 4, 8),
            "r": rng.randn(2, 4, 8),
        }

        def fn(q, k, v, r):
            attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1)
            return ((attn @ v) * r).sum()

        case(name, fn, inputs, ["q", "k", "v"], dtype)


def gen_composite():
    """d. Broadcast/view-heavy composite, f64 (see `composite` in golden_grads.rs, same steps)."""
    name = "composite_f64"
    r = Rng(name)
    inputs = {
        "a": r.randn(3, 1, 5),
        "b": r.randn(4, 5),
        "c": r.randn(10, 3, scale=0.5),
        "e": r.randn(1, 10),
        "f": r.randn(10, 1),
        "idx": torch.tensor([0, 3, 3, 7, 9], dtype=I64),
    }
    # column 0 of u is padding, so mx[:, 0] = max(0, f): keep amax over it tie-free
    assert inputs["f"].max() > 0 and (inputs["f"] == inputs["f"].max()).sum() == 1

    def fn(a, b, c, e, f, idx):
        p = a * b                                   # [3, 4, 5] broadcast
        q = p.permute(2, 0, 1)                      # [5, 3, 4]
        rr = q.reshape(15, 4)                       # not viewable: copy
        s = rr.narrow(0, 2, 10)                     # [10, 4]
        t = torch.cat([s, c.exp()], 1)              # [10, 7]
        u = F.pad(t, (1, 2, -1, 1))                 # [10, 10]: pad cols 1+2, crop 1 row, pad 1 row
        w = torch.where(u > 0.1, u, e * u)          # e [1, 10] broadcasts
        mx = torch.maximum(w, f)                    # f [10, 1] broadcasts
        m = mx.mean(1, keepdim=True)                # [10, 1]
        v = u.var(0, correction=1)                  # [10]
        lse = torch.logsumexp(mx, 1)                # [10]
        sl = mx[:, 1:9:3]                           # [10, 3] strided slice
        am = mx.amax(0)                             # [10]
        flat = mx.t().reshape(-1)[::7]              # [15] copy-reshape + strided slice
        pr = (mx[:, :3] * 0.5 + 1.0).prod(1)        # [10]
        sel = mx.index_select(0, idx)               # [5, 10] repeated row 3
        sd = a.expand(3, 4, 5).std([0, 2], correction=0)  # [4]
        return ((m.squeeze(1) * lse).sum() + (v * am).sum() + sl.square().mean() + flat.sum()
                + pr.sum() + sel.sum(0).tanh().sum() + (sd * b[:, 0]).sum())

    case(name, fn, inputs, ["a", "b", "c", "e", "f"], F64)


def gen_half_flow():
    """e. Half-precision gradient flow: x (half) * s (half) -> to f32 -> matmul, tanh -> f32 loss.

    Expected values are PyTorch's native computation: the gradients of x and s are in the
    half dtype, the gradient of w in f32."""
    for dtype, suffix in ((BF16, "bf16"), (F16, "f16")):
        name = f"half_flow_{suffix}"
        r = Rng(name)
        x = r.randn(6, 16, dtype=dtype)
        s = r.randn(16, dtype=dtype)
        w = r.linear(16, 16, 8, dtype=F32)
        put(f"{name}.x", x)
        put(f"{name}.s", s)
        put(f"{name}.w", w)
        x, s, w = (t.clone().requires_grad_(True) for t in (x, s, w))
        h = (x * s).to(F32)
        y = torch.tanh(h @ w)
        loss = y.square().mean() + 0.01 * h.sum()
        loss.backward()
        assert x.grad.dtype == dtype and s.grad.dtype == dtype and w.grad.dtype == F32
        put(f"{name}.loss", loss)
        put(f"{name}.grad.x", x.grad)
        put(f"{name}.grad.s", s.grad)
        put(f"{name}.grad.w", w.grad)


def grad_penalty_case(name, inputs, f, unused):
    """Stores a gradient-penalty case: g = d f(x) / dx (create_graph), penalty = sum(g^2), and the
    penalty's gradients w.r.t. every input but `unused` (which does not influence g: PyTorch leaves
    its .grad as None, so nothing is stored for it).  Extra key: <case>.g."""
    for k, v in inputs.items():
        put(f"{name}.{k}", v)
    ts = {k: v.clone().requires_grad_(True) for k, v in inputs.items()}
    (g,) = torch.autograd.grad(f(ts), ts["x"], create_graph=True, retain_graph=True)
    penalty = g.square().sum()
    penalty.backward()
    assert ts[unused].grad is None
    put(f"{name}.g", g)
    put(f"{name}.loss", penalty)
    for k in inputs:
        if k != unused:
            put(f"{name}.grad.{k}", ts[k].grad)


def gen_grad_penalty():
    """f. Gradient penalty: f(x) = act(x W1^T + b1) W2^T + b2; g = d sum f(x) / dx (create_graph);
    penalty = sum(g^2); gradients of the penalty w.r.t. W1, b1, W2 and x.

    Extra keys: <case>.g (the first-order gradient), <case>.loss is the penalty.  b2 does not
    influence g: PyTorch leaves its .grad as None (stored nowhere)."""
    for act_name, act in (("tanh", torch.tanh), ("silu", F.silu)):
        name = f"grad_penalty_{act_name}_f64"
        r = Rng(name)
        inputs = {
            "x": r.randn(5, 4, dtype=F64),
            "w1": r.linear(4, 6, 4, dtype=F64),
            "b1": r.linear(4, 6, dtype=F64),
            "w2": r.linear(6, 3, 6, dtype=F64),
            "b2": r.linear(6, 3, dtype=F64),
        }
        grad_penalty_case(
            name,
            inputs,
            lambda ts: linear(act(linear(ts["x"], ts["w1"], ts["b1"])), ts["w2"], ts["b2"]).sum(),
            unused="b2",
        )


def gen_convnet():
    """g. Strided/padded/grouped/dilated convolutions and every pooling op, f64:
    conv2d(stride 2, padding 1, groups 2) -> gelu -> max_pool2d(3, stride 2, padding 1) ->
    conv_transpose2d(stride 2, padding 1, output_padding 1, groups 2) -> avg_pool2d(2, ceil_mode,
    count_include_pad=False) -> conv2d(dilation 2, padding 2, no bias) -> adaptive_avg_pool2d(3, 2) ->
    loss = sum(out * r)."""
    name = "convnet_f64"
    rng = Rng(name)
    inputs = {
        "x": rng.randn(2, 4, 11, 10),
        "w1": rng.linear(18, 6, 2, 3, 3),
        "b1": rng.linear(18, 6),
        "w2": rng.linear(27, 6, 2, 3, 3),
        "b2": rng.linear(27, 4),
        "w3": rng.linear(36, 5, 4, 3, 3),
        "r": rng.randn(2, 5, 3, 2),
    }

    def fn(x, w1, b1, w2, b2, w3, r):
        h = F.gelu(F.conv2d(x, w1, b1, stride=2, padding=1, groups=2))                # [2, 6, 6, 5]
        h = F.max_pool2d(h, 3, stride=2, padding=1)                                  # [2, 6, 3, 3]
        h = F.conv_transpose2d(h, w2, b2, stride=2, padding=1, output_padding=1, groups=2)  # [2, 4, 6, 6]
        h = F.avg_pool2d(h, 2, stride=2, padding=1, ceil_mode=True, count_include_pad=False)  # [2, 4, 4, 4]
        h = F.conv2d(h, w3, None, padding=2, dilation=2)                             # [2, 5, 4, 4]
        h = F.adaptive_avg_pool2d(h, (3, 2))                                         # [2, 5, 3, 2]
        return (h * r).sum()

    case(name, fn, inputs, ["x", "w1", "b1", "w2", "b2", "w3"], F64)


def gen_grad_penalty_cnn():
    """h. Gradient penalty through a small CNN, f64: f(x) = fc(flatten(max_pool2d(softplus(conv(x)), 2)));
    g = d sum f(x) / dx (create_graph); penalty = sum(g^2); gradients w.r.t. every parameter but fc_b
    (which does not influence g) and x.  Extra key: <case>.g."""
    name = "grad_penalty_cnn_f64"
    r = Rng(name)
    inputs = {
        "x": r.randn(2, 2, 6, 6, dtype=F64),
        "conv_w": r.linear(18, 3, 2, 3, 3, dtype=F64),
        "conv_b": r.linear(18, 3, dtype=F64),
        "fc_w": r.linear(27, 2, 27, dtype=F64),
        "fc_b": r.linear(27, 2, dtype=F64),
    }

    def f(ts):
        h = F.max_pool2d(F.softplus(F.conv2d(ts["x"], ts["conv_w"], ts["conv_b"], padding=1)), 2)
        return linear(h.flatten(1), ts["fc_w"], ts["fc_b"]).sum()

    grad_penalty_case(name, inputs, f, unused="fc_b")


# ----------------------------------------------------------------------------- main


def main():
    gen_mlp()
    gen_cnn()
    gen_attention()
    gen_composite()
    gen_half_flow()
    gen_grad_penalty()
    gen_convnet()
    gen_grad_penalty_cnn()

    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "grads.safetensors")
    # a single metadata key: safetensors writes the metadata from a hash map (unordered)
    save_file(TENSORS, path, metadata={"generator": f"scripts/gen_grad_golden.py, torch {torch.__version__}"})
    os.chmod(path, 0o644)
    cases = sorted({k.split(".")[0] for k in TENSORS})
    print(f"{len(cases)} cases, {len(TENSORS)} tensors, {os.path.getsize(path) / 1e6:.2f} MB: {' '.join(cases)}")


if __name__ == "__main__":
    sys.exit(main())

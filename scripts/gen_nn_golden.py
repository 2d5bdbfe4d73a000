#!/usr/bin/env python3
"""Golden-fixture generator for `oar-nn` (PyTorch is the reference).

This script is the source of the committed fixtures

    nn/tests/fixtures/layers.safetensors  + layers.json   -> nn/tests/golden_layers.rs
    nn/tests/fixtures/losses.safetensors  + losses.json   -> nn/tests/golden_losses.rs
    nn/tests/fixtures/optim.safetensors   + optim.json    -> nn/tests/golden_optim.rs

CI does not need PyTorch: the tests only read the committed files.  Re-run this script (and
commit the six files) whenever a case is added or changed.

How to run (from the repository root):

    /tmp/torchenv/bin/python scripts/gen_nn_golden.py
    # in general:  pip install torch numpy safetensors  &&  python scripts/gen_nn_golden.py

Output is deterministic (byte-identical across runs): each case draws its inputs from its own
generator seeded from a CRC32 of its name, so adding a case leaves the others unchanged.

Format.  Each `<file>.json` is an object {"cases": {name: config}} (keys sorted) where the
config says how the Rust test builds the layer / loss / optimizer / schedule, in the Rust
API's terms (documented at each section below); the tensors of case `name` are stored in
`<file>.safetensors` under keys "<name>.<key>".  The Rust tests check that every stored
tensor is used, so the two files cannot drift apart silently.

Reference values.  f32 cases are computed in f64 from the (f32) inputs and rounded to f32
once, so the expected values carry no f32 round-off of their own; the script also runs the
same computation natively in f32 and asserts that PyTorch's own f32 result is within the
tolerance the Rust tests use (an element passes when
|got - want| <= tol * (|want| + max|want over the tensor|), tol = 1e-5 for f32, 1e-10 for
f64), so the tolerance is achievable by an ordinary f32 implementation.  f64 cases (the
optimizer trajectories) are computed in f64.  LR schedules are plain Python floats.
"""

import json
import math
import os
import sys
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "nn", "tests", "fixtures")

torch.set_num_threads(1)  # reproducible reduction order
torch.use_deterministic_algorithms(True)

F32, F64, I64 = torch.float32, torch.float64, torch.int64

# Relative tolerance per dtype, as used by the Rust tests (see the module docstring).
TOL = {F64: 1e-10, F32: 1e-5}


class Rng:
    """Per-case random source (seeded from the case name)."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def randn(self, *shape, dtype=F32, scale=1.0, shift=0.0):
        return (torch.randn(shape, generator=self.g, dtype=F64) * scale + shift).to(dtype)

    def uniform(self, lo, hi, *shape, dtype=F32):
        return (torch.rand(shape, generator=self.g, dtype=F64) * (hi - lo) + lo).to(dtype)

    def randint(self, lo, hi, *shape):
        return torch.randint(lo, hi, shape, generator=self.g, dtype=I64)


def max_err(got, want):
    """max |got - want| / (|want| + max|want|), the quantity the Rust tests bound by TOL."""
    got, want = got.detach().to(F64), want.detach().to(F64)
    if want.numel() == 0:
        return 0.0
    scale = want.abs().max()
    return ((got - want).abs() / (want.abs() + scale).clamp_min(1e-300)).max().item()


class Fixture:
    """One fixture file pair: tensors (safetensors) and case configs (JSON)."""

    def __init__(self, stem):
        self.stem = stem
        self.tensors = {}
        self.cases = {}

    def put(self, key, t):
        assert key not in self.tensors, key
        self.tensors[key] = t.detach().clone().contiguous()

    def case(self, name, cfg):
        assert name not in self.cases, name
        assert "." not in name, name
        self.cases[name] = cfg

    def write(self):
        os.makedirs(OUT_DIR, exist_ok=True)
        st = os.path.join(OUT_DIR, f"{self.stem}.safetensors")
        save_file(self.tensors, st, metadata={"generator": f"scripts/gen_nn_golden.py, torch {torch.__version__}"})
        js = os.path.join(OUT_DIR, f"{self.stem}.json")
        with open(js, "w") as f:
            json.dump({"cases": self.cases}, f, indent=1, sort_keys=True)
            f.write("\n")
        for p in (st, js):
            os.chmod(p, 0o644)
        size = os.path.getsize(st) + os.path.getsize(js)
        print(f"{self.stem}: {len(self.cases)} cases, {len(self.tensors)} tensors, {size / 1e6:.3f} MB")
        return size


def check_native(name, errs, dtype):
    worst_key = max(errs, key=errs.get)
    worst = errs[worst_key]
    print(f"  {name}: torch native {dtype} vs f64 reference, worst {worst:.2e} ({worst_key})")
    assert worst <= TOL[dtype], (name, errs)


# ============================================================================ layers
#
# A layer case: config {"layer": {...module config...}, "calls": ["train" | "eval", ...]}.
# The module config is {"kind": ..., options in the Rust API's terms}; "sequential" holds
# {"layers": [module configs]}.  Tensors:
#   <case>.state.<key>       the module's full initial state dict (PyTorch key names), loaded
#                            strictly into the Rust module
#   <case>.<k>.x             input of call k (i64 for Embedding)
#   <case>.<k>.r             the upstream gradient: loss_k = sum(out_k * r_k)
#   <case>.<k>.out           output of call k
#   <case>.<k>.grad.x        d loss_k / d x (float inputs)
#   <case>.<k>.grad.<param>  d loss_k / d param (gradients are cleared before every call)
#   <case>.<k>.state.<key>   the buffers after call k (modules with buffers only)
# Every call is run in the mode "calls" names (module.train() / module.eval()).


def build_torch(cfg):
    """The PyTorch module of a module config (f64)."""
    k = cfg["kind"]
    if k == "linear":
        return nn.Linear(cfg["in_features"], cfg["out_features"], bias=cfg["bias"], dtype=F64)
    if k == "conv2d":
        return nn.Conv2d(cfg["in_channels"], cfg["out_channels"], cfg["kernel_size"], stride=cfg["stride"],
                         padding=cfg["padding"], dilation=cfg["dilation"], groups=cfg["groups"], bias=cfg["bias"],
                         dtype=F64)
    if k == "max_pool2d":
        return nn.MaxPool2d(cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                            dilation=cfg["dilation"], ceil_mode=cfg["ceil_mode"])
    if k == "avg_pool2d":
        return nn.AvgPool2d(cfg["kernel_size"], stride=cfg["stride"], padding=cfg["padding"],
                            ceil_mode=cfg["ceil_mode"], count_include_pad=cfg["count_include_pad"])
    if k == "adaptive_avg_pool2d":
        return nn.AdaptiveAvgPool2d(cfg["output_size"])
    if k in ("batch_norm1d", "batch_norm2d"):
        cls = nn.BatchNorm1d if k == "batch_norm1d" else nn.BatchNorm2d
        return cls(cfg["num_features"], eps=cfg["eps"], momentum=cfg["momentum"], affine=cfg["affine"],
                   track_running_stats=cfg["track_running_stats"], dtype=F64)
    if k == "layer_norm":
        return nn.LayerNorm(cfg["normalized_shape"], eps=cfg["eps"], elementwise_affine=cfg["elementwise_affine"],
                            dtype=F64)
    if k == "group_norm":
        return nn.GroupNorm(cfg["num_groups"], cfg["num_channels"], eps=cfg["eps"], affine=cfg["affine"], dtype=F64)
    if k == "embedding":
        return nn.Embedding(cfg["num_embeddings"], cfg["embedding_dim"], padding_idx=cfg["padding_idx"], dtype=F64)
    if k == "relu":
        return nn.ReLU()
    if k == "leaky_relu":
        return nn.LeakyReLU(cfg["negative_slope"])
    if k == "gelu":
        return nn.GELU(approximate="tanh" if cfg["tanh_approximation"] else "none")
    if k == "silu":
        return nn.SiLU()
    if k == "softmax":
        return nn.Softmax(cfg["dim"])
    if k == "log_softmax":
        return nn.LogSoftmax(cfg["dim"])
    if k == "flatten":
        return nn.Flatten(cfg["start_dim"], cfg["end_dim"])
    if k == "sequential":
        return nn.Sequential(*[build_torch(c) for c in cfg["layers"]])
    raise ValueError(k)


def run_layer(cfg, state, calls, dtype):
    """Runs the calls of a layer case in `dtype`; returns per call (out, {grad name: grad}, buffers)."""
    m = build_torch(cfg["layer"]).to(dtype)
    m.load_state_dict({k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}, strict=True)
    results = []
    for mode, x, r in calls:
        m.train(mode == "train")
        m.zero_grad(set_to_none=True)
        x = x.detach().clone()
        if x.is_floating_point():
            x = x.to(dtype).requires_grad_(True)
        out = m(x)
        (out * r.to(dtype)).sum().backward()
        grads = {"x": x.grad} if x.is_floating_point() else {}
        for n, p in m.named_parameters():
            grads[n] = p.grad if p.grad is not None else torch.zeros_like(p)
        buffers = {n: b.detach().clone() for n, b in m.named_buffers()}
        results.append((out.detach(), grads, buffers))
    return results


def layer_case(fx, name, layer, xs, modes=None, init=None, dtype=F32):
    """Stores a layer case: `layer` (module config), inputs `xs` (one per call), `modes` ("train"
    per call unless given), `init(rng, state)` randomizes the initial state dict in place (by
    default every float parameter is drawn from N(0, 1) scaled by 1/sqrt(fan))."""
    r = Rng(name)
    modes = modes or ["train"] * len(xs)
    assert len(modes) == len(xs)
    m = build_torch(layer)
    state = {}
    for k, v in m.state_dict().items():
        v = v.detach().clone()
        if v.is_floating_point() and k.split(".")[-1] in ("weight", "bias"):
            fan = v[0].numel() if v.dim() > 1 else v.numel()
            v = r.randn(*v.shape, scale=1.0 / math.sqrt(fan), dtype=F64)
        state[k] = v.to(dtype) if v.is_floating_point() else v
    if init is not None:
        init(r, state)
        state = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in state.items()}
    xs = [x.to(dtype) if x.is_floating_point() else x for x in xs]
    with torch.no_grad():
        shapes = [build_and_shape(layer, state, mode, x) for mode, x in zip(modes, xs)]
    rs = [r.randn(*s, dtype=dtype) for s in shapes]
    calls = list(zip(modes, xs, rs))
    ref = run_layer({"layer": layer}, state, calls, F64)
    nat = run_layer({"layer": layer}, state, calls, dtype)
    for k, v in state.items():
        fx.put(f"{name}.state.{k}", v)
    errs = {}
    for i, ((mode, x, rr), (out, grads, bufs), (nout, ngrads, nbufs)) in enumerate(zip(calls, ref, nat)):
        fx.put(f"{name}.{i}.x", x)
        fx.put(f"{name}.{i}.r", rr)
        fx.put(f"{name}.{i}.out", out.to(dtype))
        errs[f"{i}.out"] = max_err(nout, out.to(dtype))
        for g, v in grads.items():
            fx.put(f"{name}.{i}.grad.{g}", v.to(dtype))
            errs[f"{i}.grad.{g}"] = max_err(ngrads[g], v.to(dtype))
        for b, v in bufs.items():
            v = v.to(dtype) if v.is_floating_point() else v
            fx.put(f"{name}.{i}.state.{b}", v)
            errs[f"{i}.state.{b}"] = max_err(nbufs[b], v)
    check_native(name, errs, dtype)
    fx.case(name, {"layer": layer, "calls": modes})


def build_and_shape(layer, state, mode, x):
    m = build_torch(layer)
    m.load_state_dict({k: (v.to(F64) if v.is_floating_point() else v) for k, v in state.items()})
    m.train(mode == "train")
    return m(x.to(F64) if x.is_floating_point() else x).shape


def conv_cfg(cin, cout, k, stride=1, padding=0, dilation=1, groups=1, bias=True):
    pair = lambda v: list(v) if isinstance(v, (list, tuple)) else [v, v]
    return {"kind": "conv2d", "in_channels": cin, "out_channels": cout, "kernel_size": pair(k), "stride": pair(stride),
            "padding": pair(padding), "dilation": pair(dilation), "groups": groups, "bias": bias}


def bn_cfg(kind, c, momentum=0.1, eps=1e-5, affine=True, track=True):
    return {"kind": kind, "num_features": c, "momentum": momentum, "eps": eps, "affine": affine,
            "track_running_stats": track}


def random_running_stats(r, state):
    """Non-default running statistics, so the momentum update's (1 - m) * old term matters."""
    for k in list(state):
        if k.endswith("running_mean"):
            state[k] = r.randn(*state[k].shape, dtype=F64, scale=0.5)
        elif k.endswith("running_var"):
            state[k] = r.uniform(0.5, 2.0, *state[k].shape, dtype=F64)


def gen_layers():
    fx = Fixture("layers")

    def xs(name, *shapes, scale=1.0, shift=0.0):
        r = Rng(name + "/x")
        return [r.randn(*s, scale=scale, shift=shift) for s in shapes]

    # Linear: with and without bias, 2-d and 3-d input.
    for bias in (True, False):
        for rank, shape in ((2, (5, 7)), (3, (2, 3, 7))):
            name = f"linear_{'bias' if bias else 'nobias'}_{rank}d"
            layer_case(fx, name, {"kind": "linear", "in_features": 7, "out_features": 4, "bias": bias},
                       xs(name, shape))
    name = "linear_bias_1d"  # a single sample without a batch dim
    layer_case(fx, name, {"kind": "linear", "in_features": 7, "out_features": 4, "bias": True}, xs(name, (7,)))

    # Conv2d: stride + padding; dilation + groups without bias; rectangular everything.
    name = "conv2d_stride2_pad1"
    layer_case(fx, name, conv_cfg(3, 5, 3, stride=2, padding=1), xs(name, (2, 3, 9, 8)))
    name = "conv2d_dilation2_groups2_nobias"
    layer_case(fx, name, conv_cfg(4, 6, 3, padding=2, dilation=2, groups=2, bias=False), xs(name, (2, 4, 7, 7)))
    name = "conv2d_rect_groups3"
    layer_case(fx, name, conv_cfg(6, 9, (3, 2), stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=3),
               xs(name, (1, 6, 8, 7)))

    # Pooling modules.
    name = "max_pool2d_k3_s2_p1"
    layer_case(fx, name, {"kind": "max_pool2d", "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
                          "dilation": [1, 1], "ceil_mode": False}, xs(name, (2, 3, 9, 8)))
    name = "max_pool2d_k2_ceil_dilation2"
    layer_case(fx, name, {"kind": "max_pool2d", "kernel_size": [2, 3], "stride": [2, 2], "padding": [0, 1],
                          "dilation": [2, 1], "ceil_mode": True}, xs(name, (2, 2, 9, 8)))
    name = "avg_pool2d_k2"
    layer_case(fx, name, {"kind": "avg_pool2d", "kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0],
                          "ceil_mode": False, "count_include_pad": True}, xs(name, (2, 3, 8, 6)))
    for include in (True, False):
        name = f"avg_pool2d_k3_s2_p1_ceil_{'incl' if include else 'excl'}"
        layer_case(fx, name, {"kind": "avg_pool2d", "kernel_size": [3, 3], "stride": [2, 2], "padding": [1, 1],
                              "ceil_mode": True, "count_include_pad": include}, xs(name, (2, 3, 8, 7)))
    name = "adaptive_avg_pool2d_3x2"
    layer_case(fx, name, {"kind": "adaptive_avg_pool2d", "output_size": [3, 2]}, xs(name, (2, 3, 7, 5)))
    name = "adaptive_avg_pool2d_1"
    layer_case(fx, name, {"kind": "adaptive_avg_pool2d", "output_size": [1, 1]}, xs(name, (2, 4, 5, 6)))
    name = "adaptive_avg_pool2d_upsample"  # output larger than the input: overlapping windows
    layer_case(fx, name, {"kind": "adaptive_avg_pool2d", "output_size": [5, 4]}, xs(name, (1, 2, 3, 2)))

    # BatchNorm: three training calls (running statistics after each), then eval.
    bn_modes = ["train", "train", "train", "eval"]
    name = "batch_norm1d_2d"
    layer_case(fx, name, bn_cfg("batch_norm1d", 5), xs(name, *[(8, 5)] * 4, scale=2.0, shift=0.5), bn_modes,
               init=random_running_stats)
    name = "batch_norm1d_3d"
    layer_case(fx, name, bn_cfg("batch_norm1d", 4, momentum=0.25), xs(name, *[(3, 4, 6)] * 4, shift=-1.0), bn_modes,
               init=random_running_stats)
    name = "batch_norm1d_cumulative"  # momentum=None: cumulative moving average
    layer_case(fx, name, bn_cfg("batch_norm1d", 4, momentum=None), xs(name, *[(3, 4, 5)] * 4, scale=1.5),
               bn_modes, init=random_running_stats)
    name = "batch_norm2d"
    layer_case(fx, name, bn_cfg("batch_norm2d", 3), xs(name, *[(4, 3, 5, 4)] * 4, scale=3.0, shift=1.0), bn_modes,
               init=random_running_stats)
    name = "batch_norm2d_cumulative_eps"
    layer_case(fx, name, bn_cfg("batch_norm2d", 3, momentum=None, eps=1e-3), xs(name, *[(2, 3, 4, 3)] * 4),
               ["train", "train", "eval", "train"], init=random_running_stats)
    name = "batch_norm2d_noaffine"
    layer_case(fx, name, bn_cfg("batch_norm2d", 3, affine=False), xs(name, *[(2, 3, 4, 4)] * 3),
               ["train", "eval", "train"], init=random_running_stats)
    name = "batch_norm2d_batch1"  # one sample: statistics over the spatial positions only
    layer_case(fx, name, bn_cfg("batch_norm2d", 2, momentum=0.5), xs(name, *[(1, 2, 3, 3)] * 3, shift=2.0),
               ["train", "train", "eval"], init=random_running_stats)
    name = "batch_norm2d_untracked"  # no running statistics: eval mode also uses batch statistics
    layer_case(fx, name, bn_cfg("batch_norm2d", 3, track=False), xs(name, *[(2, 3, 4, 4)] * 2), ["train", "eval"])

    # LayerNorm: one and two trailing dims, with and without affine.
    name = "layer_norm_1"
    layer_case(fx, name, {"kind": "layer_norm", "normalized_shape": [6], "eps": 1e-5, "elementwise_affine": True},
               xs(name, (4, 6), scale=2.0, shift=1.0))
    name = "layer_norm_2"
    layer_case(fx, name, {"kind": "layer_norm", "normalized_shape": [4, 5], "eps": 1e-5, "elementwise_affine": True},
               xs(name, (2, 3, 4, 5)))
    name = "layer_norm_1d_input"
    layer_case(fx, name, {"kind": "layer_norm", "normalized_shape": [6], "eps": 1e-5, "elementwise_affine": True},
               xs(name, (6,), shift=3.0))
    name = "layer_norm_2_noaffine"
    layer_case(fx, name, {"kind": "layer_norm", "normalized_shape": [3, 4], "eps": 1e-3, "elementwise_affine": False},
               xs(name, (5, 3, 4), shift=-2.0))

    # GroupNorm.
    name = "group_norm_3of6"
    layer_case(fx, name, {"kind": "group_norm", "num_groups": 3, "num_channels": 6, "eps": 1e-5, "affine": True},
               xs(name, (2, 6, 4, 3), scale=2.0, shift=0.5))
    name = "group_norm_1of4_noaffine_3d"
    layer_case(fx, name, {"kind": "group_norm", "num_groups": 1, "num_channels": 4, "eps": 1e-5, "affine": False},
               xs(name, (3, 4, 5)))
    name = "group_norm_4of4"  # instance-norm-like
    layer_case(fx, name, {"kind": "group_norm", "num_groups": 4, "num_channels": 4, "eps": 1e-4, "affine": True},
               xs(name, (2, 4, 3, 3)))

    # Embedding: repeated indices; with padding_idx, the (nonzero) padding row is returned as
    # stored but gets no gradient.
    def emb_weight(r, state):
        state["weight"] = r.randn(10, 4, dtype=F64)

    idx = torch.tensor([[1, 2, 3, 2, 9], [0, 2, 2, 7, 1], [5, 5, 5, 3, 4]], dtype=I64)
    for pad in (None, 2):
        name = f"embedding_{'pad2' if pad is not None else 'nopad'}"
        layer_case(fx, name, {"kind": "embedding", "num_embeddings": 10, "embedding_dim": 4, "padding_idx": pad},
                   [idx], init=emb_weight)

    # Activations and shape layers.  Inputs include exact zeros (the subgradient convention).
    def with_zeros(x):
        x = x.clone()
        x.view(-1)[::7] = 0.0
        return x

    name = "leaky_relu_0p2"
    layer_case(fx, name, {"kind": "leaky_relu", "negative_slope": 0.2}, [with_zeros(xs(name, (4, 9), scale=2)[0])])
    name = "leaky_relu_default"
    layer_case(fx, name, {"kind": "leaky_relu", "negative_slope": 0.01}, [with_zeros(xs(name, (3, 7))[0])])
    for tanh in (False, True):
        name = f"gelu_{'tanh' if tanh else 'erf'}"
        layer_case(fx, name, {"kind": "gelu", "tanh_approximation": tanh}, [with_zeros(xs(name, (5, 8), scale=3)[0])])
    name = "silu"
    layer_case(fx, name, {"kind": "silu"}, [with_zeros(xs(name, (5, 8), scale=3)[0])])
    name = "gelu_erf_wide"  # far tails: gelu(x) -> x and -> 0
    layer_case(fx, name, {"kind": "gelu", "tanh_approximation": False}, xs(name, (4, 8), scale=8))
    name = "silu_wide"
    layer_case(fx, name, {"kind": "silu"}, xs(name, (4, 8), scale=30))
    name = "softmax_dim1"
    layer_case(fx, name, {"kind": "softmax", "dim": 1}, xs(name, (2, 5, 3), scale=3))
    name = "softmax_large"  # logits of magnitude ~1e3: no overflow
    layer_case(fx, name, {"kind": "softmax", "dim": -1}, xs(name, (3, 4), scale=500))
    name = "log_softmax_dim_last"
    layer_case(fx, name, {"kind": "log_softmax", "dim": -1}, xs(name, (3, 2, 6), scale=5))
    name = "log_softmax_dim0_large"
    layer_case(fx, name, {"kind": "log_softmax", "dim": 0}, xs(name, (4, 3), scale=500))
    name = "flatten_default"
    layer_case(fx, name, {"kind": "flatten", "start_dim": 1, "end_dim": -1}, xs(name, (2, 3, 2, 2)))
    name = "flatten_1_2"
    layer_case(fx, name, {"kind": "flatten", "start_dim": 1, "end_dim": 2}, xs(name, (2, 3, 2, 4)))

    # A small Sequential CNN (nested state dict keys "0.weight", "1.running_mean", ...): two
    # training calls then eval.
    name = "sequential_cnn"
    seq = {"kind": "sequential", "layers": [
        conv_cfg(2, 4, 3, padding=1, bias=False),  # a bias before batch norm has a zero gradient
        bn_cfg("batch_norm2d", 4),
        {"kind": "relu"},
        {"kind": "max_pool2d", "kernel_size": [2, 2], "stride": [2, 2], "padding": [0, 0], "dilation": [1, 1],
         "ceil_mode": False},
        {"kind": "flatten", "start_dim": 1, "end_dim": -1},
        {"kind": "linear", "in_features": 36, "out_features": 3, "bias": True},
        {"kind": "log_softmax", "dim": 1},
    ]}
    layer_case(fx, name, seq, xs(name, *[(3, 2, 6, 6)] * 3), ["train", "train", "eval"])

    return fx.write()


# ============================================================================ losses
#
# A loss case: config {"fn": "cross_entropy" | "nll_loss" | "mse_loss" | "l1_loss" |
# "binary_cross_entropy_with_logits", "reduction": "none" | "mean" | "sum", and for the class
# losses "weight": bool, "label_smoothing": float, "ignore_index": int | null; for BCE
# "weight": bool, "pos_weight": bool}.  Tensors:
#   <case>.input, <case>.target, <case>.weight, <case>.pos_weight (when used)
#   <case>.r            (reduction "none" only) the upstream gradient: L = sum(loss * r)
#   <case>.loss         the loss (before multiplying by r)
#   <case>.grad.input   d L / d input (L = loss for the scalar reductions)


def loss_fn(cfg, ts):
    f, red = cfg["fn"], cfg["reduction"]
    if f in ("cross_entropy", "nll_loss"):
        kw = {"reduction": red, "weight": ts.get("weight")}
        if cfg["ignore_index"] is not None:
            kw["ignore_index"] = cfg["ignore_index"]
        if f == "cross_entropy":
            return F.cross_entropy(ts["input"], ts["target"], label_smoothing=cfg["label_smoothing"], **kw)
        return F.nll_loss(ts["input"], ts["target"], **kw)
    if f == "mse_loss":
        return F.mse_loss(ts["input"], ts["target"], reduction=red)
    if f == "l1_loss":
        return F.l1_loss(ts["input"], ts["target"], reduction=red)
    if f == "binary_cross_entropy_with_logits":
        return F.binary_cross_entropy_with_logits(ts["input"], ts["target"], weight=ts.get("weight"),
                                                  pos_weight=ts.get("pos_weight"), reduction=red)
    raise ValueError(f)


def loss_case(fx, name, cfg, tensors, dtype=F32):
    tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}

    def run(dt, r):
        ts = {k: (v.to(dt) if v.is_floating_point() else v) for k, v in tensors.items()}
        ts["input"] = ts["input"].clone().requires_grad_(True)
        loss = loss_fn(cfg, ts)
        total = (loss * r.to(dt)).sum() if r is not None else loss
        total.backward()
        return loss.detach(), ts["input"].grad

    r = None
    if cfg["reduction"] == "none":
        with torch.no_grad():
            shape = loss_fn(cfg, {k: v.to(F64) if v.is_floating_point() else v for k, v in tensors.items()}).shape
        r = Rng(name + "/r").randn(*shape, dtype=dtype)
    loss, grad = run(F64, r)
    nloss, ngrad = run(dtype, r)
    for k, v in tensors.items():
        fx.put(f"{name}.{k}", v)
    if r is not None:
        fx.put(f"{name}.r", r)
    fx.put(f"{name}.loss", loss.to(dtype))
    fx.put(f"{name}.grad.input", grad.to(dtype))
    check_native(name, {"loss": max_err(nloss, loss.to(dtype)), "grad.input": max_err(ngrad, grad.to(dtype))}, dtype)
    fx.case(name, cfg)


def ce_cfg(fn="cross_entropy", reduction="mean", weight=False, label_smoothing=0.0, ignore_index=None):
    return {"fn": fn, "reduction": reduction, "weight": weight, "label_smoothing": label_smoothing,
            "ignore_index": ignore_index}


def gen_losses():
    fx = Fixture("losses")

    def class_inputs(name, shape, classes, ignore=None, n_ignored=0, weight=False, log_probs=False):
        r = Rng(name)
        x = r.randn(*shape, scale=2.0)
        if log_probs:
            x = torch.log_softmax(x.to(F64), 1).to(F32)
        tshape = shape[:1] + shape[2:] if len(shape) > 1 else ()
        t = r.randint(0, classes, *tshape)
        if ignore is not None:
            flat = t.view(-1)
            for i in range(n_ignored):
                flat[(3 * i + 1) % flat.numel()] = ignore
        ts = {"input": x, "target": t}
        if weight:
            ts["weight"] = r.uniform(0.2, 2.0, classes)
        return ts

    # cross_entropy with class indices.
    for red in ("none", "mean", "sum"):
        name = f"ce_2d_{red}"
        loss_case(fx, name, ce_cfg(reduction=red), class_inputs(name, (6, 5), 5))
    name = "ce_1d"  # a single sample: logits [C], target []
    loss_case(fx, name, ce_cfg(), class_inputs(name, (7,), 7))
    for red in ("none", "mean"):
        name = f"ce_4d_{red}"
        loss_case(fx, name, ce_cfg(reduction=red), class_inputs(name, (2, 4, 3, 5), 4))
    for red in ("none", "mean", "sum"):
        name = f"ce_weight_{red}"
        loss_case(fx, name, ce_cfg(reduction=red, weight=True), class_inputs(name, (8, 5), 5, weight=True))
    for red in ("none", "mean", "sum"):
        name = f"ce_smoothing_{red}"
        loss_case(fx, name, ce_cfg(reduction=red, label_smoothing=0.15), class_inputs(name, (6, 4), 4))
    for red in ("none", "mean", "sum"):
        name = f"ce_ignore_{red}"  # PyTorch's default ignore_index -100 (set explicitly in Oar)
        loss_case(fx, name, ce_cfg(reduction=red, ignore_index=-100),
                  class_inputs(name, (7, 5), 5, ignore=-100, n_ignored=3))
    name = "ce_ignore_valid_class_mean"  # an ignored index that is also a valid class
    loss_case(fx, name, ce_cfg(ignore_index=0), class_inputs(name, (9, 3), 3, ignore=0, n_ignored=2))
    name = "ce_weight_smoothing_mean"
    loss_case(fx, name, ce_cfg(weight=True, label_smoothing=0.2), class_inputs(name, (6, 5), 5, weight=True))
    name = "ce_weight_ignore_mean"
    loss_case(fx, name, ce_cfg(weight=True, ignore_index=-100),
              class_inputs(name, (8, 4), 4, ignore=-100, n_ignored=3, weight=True))
    for red in ("none", "mean", "sum"):
        name = f"ce_weight_smoothing_ignore_4d_{red}"
        loss_case(fx, name, ce_cfg(reduction=red, weight=True, label_smoothing=0.1, ignore_index=-100),
                  class_inputs(name, (2, 3, 4, 3), 3, ignore=-100, n_ignored=5, weight=True))
    name = "ce_smoothing_ignore_mean"
    loss_case(fx, name, ce_cfg(label_smoothing=0.3, ignore_index=2),
              class_inputs(name, (10, 4), 4, ignore=2, n_ignored=3))
    name = "ce_large_logits"  # stability: logits of magnitude ~1e3
    ts = class_inputs(name, (5, 4), 4)
    ts["input"] = ts["input"] * 500.0
    loss_case(fx, name, ce_cfg(label_smoothing=0.1), ts)

    # cross_entropy with class-probability targets.
    def prob_inputs(name, shape, weight=False):
        r = Rng(name)
        ts = {"input": r.randn(*shape, scale=2.0),
              "target": torch.softmax(r.randn(*shape, scale=2.0, dtype=F64), 1).to(F32)}
        if weight:
            ts["weight"] = r.uniform(0.2, 2.0, shape[1])
        return ts

    for red in ("none", "mean", "sum"):
        name = f"ce_probs_{red}"
        loss_case(fx, name, ce_cfg(reduction=red), prob_inputs(name, (6, 5)))
    name = "ce_probs_weight_smoothing_mean"
    loss_case(fx, name, ce_cfg(weight=True, label_smoothing=0.1), prob_inputs(name, (6, 5), weight=True))
    name = "ce_probs_4d_weight_sum"
    loss_case(fx, name, ce_cfg(reduction="sum", weight=True), prob_inputs(name, (2, 3, 2, 4), weight=True))
    name = "ce_probs_4d_mean"
    loss_case(fx, name, ce_cfg(label_smoothing=0.05), prob_inputs(name, (2, 3, 2, 4)))

    # nll_loss (input: log-probabilities).
    for red in ("none", "mean", "sum"):
        name = f"nll_{red}"
        loss_case(fx, name, ce_cfg("nll_loss", reduction=red), class_inputs(name, (6, 5), 5, log_probs=True))
    name = "nll_weight_ignore_mean"
    loss_case(fx, name, ce_cfg("nll_loss", weight=True, ignore_index=-100),
              class_inputs(name, (8, 4), 4, ignore=-100, n_ignored=2, weight=True, log_probs=True))
    name = "nll_weight_4d_none"
    loss_case(fx, name, ce_cfg("nll_loss", reduction="none", weight=True),
              class_inputs(name, (2, 4, 3, 3), 4, weight=True, log_probs=True))

    # mse / l1 (some elements exactly equal: |x - y| has subgradient 0 there).
    def reg_inputs(name, shape):
        r = Rng(name)
        x, y = r.randn(*shape), r.randn(*shape)
        y.view(-1)[::5] = x.view(-1)[::5]
        return {"input": x, "target": y}

    for f in ("mse_loss", "l1_loss"):
        for red in ("none", "mean", "sum"):
            name = f"{f.split('_')[0]}_{red}"
            loss_case(fx, name, {"fn": f, "reduction": red}, reg_inputs(name, (4, 3, 5)))

    # binary_cross_entropy_with_logits: logits of every magnitude, including exact zeros and
    # +-100 (no overflow), targets in [0, 1] including soft ones.
    def bce_inputs(name, shape, weight_shape=None, pos_weight=False):
        r = Rng(name)
        x = r.randn(*shape, scale=3.0)
        flat = x.view(-1)
        specials = [0.0, 100.0, -100.0, 30.0, -30.0, 0.0, 15.0, -15.0]
        for i, v in enumerate(specials):
            flat[(5 * i + 2) % flat.numel()] = v
        t = r.randint(0, 2, *shape).to(F32)
        t.view(-1)[1::4] = r.uniform(0.0, 1.0, t.view(-1)[1::4].numel())
        ts = {"input": x, "target": t}
        if weight_shape is not None:
            ts["weight"] = r.uniform(0.1, 2.0, *weight_shape)
        if pos_weight:
            ts["pos_weight"] = r.uniform(0.5, 4.0, shape[-1])
        return ts

    for red in ("none", "mean", "sum"):
        name = f"bce_{red}"
        loss_case(fx, name, {"fn": "binary_cross_entropy_with_logits", "reduction": red, "weight": False,
                             "pos_weight": False}, bce_inputs(name, (6, 5)))
    name = "bce_weight_mean"  # weight broadcast over the batch
    loss_case(fx, name, {"fn": "binary_cross_entropy_with_logits", "reduction": "mean", "weight": True,
                         "pos_weight": False}, bce_inputs(name, (6, 5), weight_shape=(5,)))
    for red in ("none", "mean", "sum"):
        name = f"bce_pos_weight_{red}"
        loss_case(fx, name, {"fn": "binary_cross_entropy_with_logits", "reduction": red, "weight": False,
                             "pos_weight": True}, bce_inputs(name, (4, 6), pos_weight=True))
    name = "bce_weight_pos_weight_3d_sum"
    loss_case(fx, name, {"fn": "binary_cross_entropy_with_logits", "reduction": "sum", "weight": True,
                         "pos_weight": True}, bce_inputs(name, (2, 3, 4), weight_shape=(2, 3, 4), pos_weight=True))

    return fx.write()


# ============================================================================ optimizers, schedules, clipping
#
# Optimizer case: config {"kind": "optimizer", "optim": "sgd" | "adam" | "adamw" | "rmsprop",
# "config": {Rust config fields: lr, momentum, ...}, "groups": null | [{"params": [i...],
# "lr": float | null, "weight_decay": float | null}], "num_params": n, "steps": s,
# "dtype": "f64" | "f32"}.  Tensors:
#   <case>.p<i>.init        initial value of parameter i
#   <case>.p<i>.grad<k>     its gradient at step k (absent: no gradient at that step)
#   <case>.p<i>.step<k>     its value after step k
#
# Schedule case: config {"kind": "schedule", "schedule": {...}, "base_lrs": [...],
# "lrs": [[lr per group] per epoch]} (epoch 0 is after construction; no tensors).
#
# Clipping case: config {"kind": "clip_grad_norm", "max_norm", "norm_type": float | "inf"} or
# {"kind": "clip_grad_value", "clip_value"}, "num_params": n.  Gradients are f32 or f64 (the
# parameters take the gradients' dtype and shape).  Tensors:
#   <case>.p<i>.grad       gradient before clipping (absent: the parameter has none)
#   <case>.p<i>.clipped    gradient after clipping
#   <case>.total_norm      (clip_grad_norm) the returned total norm


def make_optim(cfg, params):
    name, c = cfg["optim"], cfg["config"]
    if cfg["groups"] is None:
        groups = params
    else:
        groups = []
        for g in cfg["groups"]:
            d = {"params": [params[i] for i in g["params"]]}
            if g["lr"] is not None:
                d["lr"] = g["lr"]
            if g["weight_decay"] is not None:
                d["weight_decay"] = g["weight_decay"]
            groups.append(d)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=c["lr"], momentum=c["momentum"], dampening=c["dampening"],
                               weight_decay=c["weight_decay"], nesterov=c["nesterov"], maximize=c["maximize"])
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(groups, lr=c["lr"], betas=tuple(c["betas"]), eps=c["eps"], weight_decay=c["weight_decay"],
                   amsgrad=c["amsgrad"], maximize=c["maximize"])
    if name == "rmsprop":
        return torch.optim.RMSprop(groups, lr=c["lr"], alpha=c["alpha"], eps=c["eps"], weight_decay=c["weight_decay"],
                                   momentum=c["momentum"], centered=c["centered"])
    raise ValueError(name)


def run_optim(cfg, inits, grads, dtype):
    params = [torch.nn.Parameter(p.clone().to(dtype)) for p in inits]
    opt = make_optim(cfg, params)
    traj = []
    for k in range(cfg["steps"]):
        for i, p in enumerate(params):
            g = grads[i][k]
            p.grad = None if g is None else g.clone().to(dtype)
        opt.step()
        traj.append([p.detach().clone() for p in params])
    return traj


def optim_case(fx, name, optim, config, shapes, steps=6, groups=None, dtype=F64, missing=(), scales=None):
    """`missing`: (param, step) pairs with no gradient; `scales[k]` multiplies step k's gradients
    (so the second moment can shrink: what AMSGrad's max is for)."""
    r = Rng(name)
    inits = [r.randn(*s, dtype=dtype) for s in shapes]
    grads = [[None if (i, k) in missing else r.randn(*s, dtype=dtype, scale=(scales[k] if scales else 1.0))
              for k in range(steps)] for i, s in enumerate(shapes)]
    cfg = {"kind": "optimizer", "optim": optim, "config": config, "groups": groups, "num_params": len(shapes),
           "steps": steps, "dtype": {F32: "f32", F64: "f64"}[dtype]}
    ref = run_optim(cfg, inits, grads, F64)
    for i, p in enumerate(inits):
        fx.put(f"{name}.p{i}.init", p)
        for k in range(steps):
            if grads[i][k] is not None:
                fx.put(f"{name}.p{i}.grad{k}", grads[i][k])
            fx.put(f"{name}.p{i}.step{k}", ref[k][i].to(dtype))
    if dtype != F64:
        nat = run_optim(cfg, inits, grads, dtype)
        errs = {f"p{i}.step{k}": max_err(nat[k][i], ref[k][i].to(dtype)) for k in range(steps) for i in range(len(inits))}
        check_native(name, errs, dtype)
    fx.case(name, cfg)


def sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    return {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
            "nesterov": nesterov, "maximize": maximize}


def adam(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False):
    return {"lr": lr, "betas": list(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
            "maximize": maximize}


def rmsprop(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
    return {"lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay, "momentum": momentum,
            "centered": centered}


def schedule_case(fx, name, sched, make, base_lrs=(0.1, 0.03), epochs=30):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in base_lrs]
    opt = torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, base_lrs)], lr=base_lrs[0])
    s = make(opt)
    lrs = []
    for e in range(epochs):
        if e > 0:
            opt.step()
            s.step()
        lrs.append([g["lr"] for g in opt.param_groups])
        assert all(abs(a - b) <= 1e-15 * abs(b) for a, b in zip(s.get_last_lr(), lrs[-1])), name
    fx.case(name, {"kind": "schedule", "schedule": sched, "base_lrs": list(base_lrs), "lrs": lrs})


def clip_case(fx, name, cfg, shapes, missing=(), scale=1.0, dtype=F32):
    r = Rng(name)
    params = [torch.nn.Parameter(torch.zeros(s, dtype=F64)) for s in shapes]
    for i, (p, s) in enumerate(zip(params, shapes)):
        if i not in missing:
            p.grad = r.randn(*s, scale=scale, dtype=dtype).to(F64)
            fx.put(f"{name}.p{i}.grad", p.grad.to(dtype))
    if cfg["kind"] == "clip_grad_norm":
        nt = math.inf if cfg["norm_type"] == "inf" else cfg["norm_type"]
        total = torch.nn.utils.clip_grad_norm_(params, cfg["max_norm"], norm_type=nt)
        fx.put(f"{name}.total_norm", total.to(dtype))
    else:
        torch.nn.utils.clip_grad_value_(params, cfg["clip_value"])
    for i, p in enumerate(params):
        if i not in missing:
            fx.put(f"{name}.p{i}.clipped", p.grad.to(dtype))
    fx.case(name, dict(cfg, num_params=len(shapes)))


def gen_optim():
    fx = Fixture("optim")
    shapes = [(3, 4), (4,), (2, 1, 3)]

    # SGD.
    optim_case(fx, "sgd_plain", "sgd", sgd(0.1), shapes)
    optim_case(fx, "sgd_momentum", "sgd", sgd(0.05, momentum=0.9), shapes)
    optim_case(fx, "sgd_momentum_dampening", "sgd", sgd(0.05, momentum=0.8, dampening=0.3), shapes)
    optim_case(fx, "sgd_nesterov_wd", "sgd", sgd(0.05, momentum=0.9, nesterov=True, weight_decay=0.01), shapes)
    optim_case(fx, "sgd_weight_decay", "sgd", sgd(0.1, weight_decay=0.1), shapes)
    optim_case(fx, "sgd_maximize_momentum_wd", "sgd", sgd(0.02, momentum=0.5, weight_decay=0.05, maximize=True), shapes)
    optim_case(fx, "sgd_nesterov_f32", "sgd", sgd(0.05, momentum=0.9, nesterov=True, weight_decay=0.01), shapes,
               dtype=F32)
    optim_case(fx, "sgd_groups_missing_grads", "sgd", sgd(0.1, momentum=0.9, weight_decay=0.01), shapes,
               groups=[{"params": [0, 2], "lr": None, "weight_decay": 0.1}, {"params": [1], "lr": 0.5,
                                                                             "weight_decay": None}],
               missing=[(0, 2), (1, 0), (2, 3), (2, 4)])

    # Adam / AdamW.
    shrink = [1.0, 3.0, 0.1, 0.05, 2.0, 0.01, 0.5, 0.02]
    optim_case(fx, "adam_default", "adam", adam(1e-2), shapes)
    optim_case(fx, "adam_betas_eps_wd", "adam", adam(3e-2, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1), shapes)
    optim_case(fx, "adam_amsgrad", "adam", adam(1e-2, amsgrad=True), shapes, steps=8, scales=shrink)
    optim_case(fx, "adam_amsgrad_wd_maximize", "adam", adam(1e-2, weight_decay=0.05, amsgrad=True, maximize=True),
               shapes, steps=8, scales=shrink)
    optim_case(fx, "adam_groups_missing_grads", "adam", adam(1e-2, weight_decay=0.01), shapes,
               groups=[{"params": [1], "lr": 0.05, "weight_decay": 0.0}, {"params": [0, 2], "lr": None,
                                                                          "weight_decay": 0.2}],
               missing=[(0, 0), (0, 1), (2, 3)], steps=7)
    optim_case(fx, "adam_f32", "adam", adam(1e-2, weight_decay=0.01), shapes, dtype=F32)
    optim_case(fx, "adamw_default_wd", "adamw", adam(1e-2, weight_decay=0.01), shapes)
    optim_case(fx, "adamw_amsgrad_wd", "adamw", adam(5e-2, weight_decay=0.3, amsgrad=True), shapes, steps=8,
               scales=shrink)
    optim_case(fx, "adamw_maximize_groups", "adamw", adam(1e-2, weight_decay=0.1, maximize=True), shapes,
               groups=[{"params": [0], "lr": 0.1, "weight_decay": 0.5}, {"params": [1, 2], "lr": None,
                                                                         "weight_decay": None}])

    # RMSprop.
    optim_case(fx, "rmsprop_default", "rmsprop", rmsprop(1e-2), shapes)
    optim_case(fx, "rmsprop_centered", "rmsprop", rmsprop(1e-2, alpha=0.9, centered=True), shapes)
    optim_case(fx, "rmsprop_momentum_wd", "rmsprop", rmsprop(1e-2, momentum=0.9, weight_decay=0.1, eps=1e-6), shapes)
    optim_case(fx, "rmsprop_centered_momentum", "rmsprop", rmsprop(5e-3, alpha=0.95, momentum=0.5, centered=True),
               shapes, steps=8, scales=shrink)
    optim_case(fx, "rmsprop_centered_f32", "rmsprop", rmsprop(1e-2, alpha=0.9, centered=True, momentum=0.2), shapes,
               dtype=F32)
    optim_case(fx, "rmsprop_groups_missing_grads", "rmsprop", rmsprop(1e-2, momentum=0.3), shapes,
               groups=[{"params": [2, 0], "lr": 0.003, "weight_decay": 0.1}, {"params": [1], "lr": None,
                                                                              "weight_decay": None}],
               missing=[(1, 1), (0, 4)])

    # LR schedules (two groups with different base rates; 30 epochs).
    S = torch.optim.lr_scheduler
    schedule_case(fx, "sched_step", {"kind": "step", "step_size": 7, "gamma": 0.5}, lambda o: S.StepLR(o, 7, 0.5))
    schedule_case(fx, "sched_multistep", {"kind": "multistep", "milestones": [3, 10, 10, 22], "gamma": 0.3},
                  lambda o: S.MultiStepLR(o, [3, 10, 10, 22], 0.3))
    schedule_case(fx, "sched_multistep_at_zero", {"kind": "multistep", "milestones": [0, 5], "gamma": 0.1},
                  lambda o: S.MultiStepLR(o, [0, 5], 0.1))
    schedule_case(fx, "sched_step1", {"kind": "step", "step_size": 1, "gamma": 0.8}, lambda o: S.StepLR(o, 1, 0.8))
    schedule_case(fx, "sched_exponential", {"kind": "exponential", "gamma": 0.9}, lambda o: S.ExponentialLR(o, 0.9))
    schedule_case(fx, "sched_cosine", {"kind": "cosine", "t_max": 30, "eta_min": 0.0},
                  lambda o: S.CosineAnnealingLR(o, 30))
    schedule_case(fx, "sched_cosine_periodic", {"kind": "cosine", "t_max": 8, "eta_min": 1e-3},
                  lambda o: S.CosineAnnealingLR(o, 8, eta_min=1e-3))
    schedule_case(fx, "sched_linear", {"kind": "linear", "start_factor": 0.25, "end_factor": 1.0, "total_iters": 8},
                  lambda o: S.LinearLR(o, 0.25, 1.0, 8))
    schedule_case(fx, "sched_linear_decay", {"kind": "linear", "start_factor": 1.0, "end_factor": 0.1,
                                             "total_iters": 20},
                  lambda o: S.LinearLR(o, 1.0, 0.1, 20))
    schedule_case(fx, "sched_onecycle", {"kind": "onecycle", "max_lr": 0.5, "total_steps": 30, "pct_start": 0.3,
                                         "div_factor": 25.0, "final_div_factor": 1e4},
                  lambda o: S.OneCycleLR(o, 0.5, total_steps=30, cycle_momentum=False))
    schedule_case(fx, "sched_onecycle_custom", {"kind": "onecycle", "max_lr": 1.0, "total_steps": 30,
                                                "pct_start": 0.25, "div_factor": 10.0, "final_div_factor": 100.0},
                  lambda o: S.OneCycleLR(o, 1.0, total_steps=30, pct_start=0.25, div_factor=10.0,
                                         final_div_factor=100.0, cycle_momentum=False))
    schedule_case(fx, "sched_onecycle_short", {"kind": "onecycle", "max_lr": 0.2, "total_steps": 5, "pct_start": 0.1,
                                               "div_factor": 25.0, "final_div_factor": 1e4},
                  lambda o: S.OneCycleLR(o, 0.2, total_steps=5, pct_start=0.1, cycle_momentum=False), epochs=5)
    schedule_case(fx, "sched_sequential_warmup_cosine",
                  {"kind": "sequential", "milestones": [5], "schedules": [
                      {"kind": "linear", "start_factor": 0.1, "end_factor": 1.0, "total_iters": 5},
                      {"kind": "cosine", "t_max": 25, "eta_min": 1e-4}]},
                  lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.1, 1.0, 5), S.CosineAnnealingLR(o, 25, 1e-4)], [5]))

    # Gradient clipping (the reference is computed in f64).
    cshapes = [(3, 4), (5,), (2, 2, 2), (3,)]
    clip_case(fx, "clip_norm2", {"kind": "clip_grad_norm", "max_norm": 1.0, "norm_type": 2.0}, cshapes, missing=[3])
    clip_case(fx, "clip_norm2_no_clip", {"kind": "clip_grad_norm", "max_norm": 100.0, "norm_type": 2.0}, cshapes)
    clip_case(fx, "clip_norm1", {"kind": "clip_grad_norm", "max_norm": 2.5, "norm_type": 1.0}, cshapes, missing=[1])
    clip_case(fx, "clip_norm3", {"kind": "clip_grad_norm", "max_norm": 0.5, "norm_type": 3.0}, cshapes)
    clip_case(fx, "clip_norm_inf", {"kind": "clip_grad_norm", "max_norm": 0.75, "norm_type": "inf"}, cshapes,
              scale=2.0)
    clip_case(fx, "clip_value", {"kind": "clip_grad_value", "clip_value": 0.6}, cshapes, missing=[0])
    # f64 gradients: the norm and the clipping factor must be computed in f64 (tol 1e-10).
    clip_case(fx, "clip_norm2_f64", {"kind": "clip_grad_norm", "max_norm": 1.0, "norm_type": 2.0}, cshapes,
              dtype=F64)
    clip_case(fx, "clip_norm_inf_f64", {"kind": "clip_grad_norm", "max_norm": 0.5, "norm_type": "inf"}, cshapes,
              missing=[2], dtype=F64)

    return fx.write()


def main():
    total = gen_layers() + gen_losses() + gen_optim()
    print(f"total {total / 1e6:.3f} MB")
    assert total < 1.5e6


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Golden-fixture generator for `oar-tensor` (PyTorch is the reference).

This script is the source of the committed fixtures

    tensor/tests/golden/fixtures.safetensors   (all input and expected-output tensors)
    tensor/tests/golden/cases.json             (the list of cases: op, attributes, views, tolerances)

which are read by the integration test `tensor/tests/golden.rs`.  CI does not need
PyTorch: it only reads the committed files.  Re-run this script (and commit the two
files) whenever a case is added or changed.

How to run (from the repository root):

    /root/venv-ref/bin/python scripts/gen_golden.py        # the dev box's reference venv
    # in general:  pip install torch numpy safetensors  &&  python scripts/gen_golden.py

Output is deterministic (byte-identical across runs): each case, or small group of related
cases, draws its random inputs from its own generator seeded from a CRC32 of its name, so
adding a case leaves the inputs of other groups unchanged.

Format of cases.json: a list of
    {"name": str, "op": str, "args": {...op attributes...},
     "inputs": [{"key": str, "view": [view steps]}], "outputs": [str keys],
     "rtol": float, "atol": float}
A view step is one of {"permute": [dims]}, {"expand": [shape]}, {"slice": [dim, start, end, step]}.
The stored tensor under "key" is the contiguous *base*; the harness applies the view steps
(`permute` / `expand` / `slice`) to it, exactly as done here before calling torch, so that
inputs are non-contiguous views.  An output matches when shapes and dtypes are equal and
|got - expected| <= atol + rtol * |expected| element-wise (NaN matches NaN, infinities must
be equal, integer/bool outputs are exact).  Tensor keys are "<case>.in<i>" and "<case>.out<i>".
JSON has no inf/nan, so non-finite float attributes are written as "inf", "-inf", "nan".
Attribute names follow the Rust API (see tensor/tests/golden.rs for the dispatch).
"""

import json
import math
import os
import sys
import warnings
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tensor", "tests", "golden")

warnings.filterwarnings("ignore", message="var\\(\\): degrees of freedom")  # var_single_c1 is intended
torch.set_num_threads(1)  # reproducible reduction order
torch.use_deterministic_algorithms(True)

F32, F64, F16, BF16 = torch.float32, torch.float64, torch.float16, torch.bfloat16
I64, I32, U8, BOOL = torch.int64, torch.int32, torch.uint8, torch.bool

DTYPE_NAME = {F32: "f32", F64: "f64", F16: "f16", BF16: "bf16", I64: "i64", I32: "i32", U8: "u8", BOOL: "bool"}

# default (rtol, atol) for element-wise results
TOL = {
    F64: (1e-10, 1e-12),
    F32: (1e-5, 1e-6),
    F16: (1e-2, 1e-3),
    BF16: (2e-2, 1e-2),
    I64: (0.0, 0.0), I32: (0.0, 0.0), U8: (0.0, 0.0), BOOL: (0.0, 0.0),
}
# looser tolerances for accumulating ops (reductions, matmul, conv, pooling of sums)
TOL_ACC = {
    F64: (1e-9, 1e-10),
    F32: (1e-4, 1e-4),
    F16: (2e-2, 1e-2),
    BF16: (4e-2, 4e-2),
    I64: (0.0, 0.0), I32: (0.0, 0.0), U8: (0.0, 0.0), BOOL: (0.0, 0.0),
}

CASES = []
TENSORS = {}
NAMES = set()


# ----------------------------------------------------------------------------- helpers

class Rng:
    """Per-case random source (seeded from the case name)."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def randn(self, *shape, dtype=F32, scale=1.0, shift=0.0):
        x = torch.randn(tuple(shape), generator=self.g, dtype=F64) * scale + shift
        return x.to(dtype)

    def uniform(self, lo, hi, *shape, dtype=F32):
        x = torch.rand(tuple(shape), generator=self.g, dtype=F64) * (hi - lo) + lo
        return x.to(dtype)

    def randint(self, lo, hi, *shape, dtype=I64):
        return torch.randint(lo, hi, shape, generator=self.g, dtype=I64).to(dtype)

    def perm(self, n):
        return torch.randperm(n, generator=self.g)


class In:
    """An input: a contiguous base tensor plus view steps applied to it."""

    def __init__(self, base, view=()):
        self.base = base.contiguous()
        self.view = list(view)

    def tensor(self):
        t = self.base
        for step in self.view:
            (kind, arg), = step.items()
            if kind == "permute":
                t = t.permute(*arg)
            elif kind == "expand":
                t = t.expand(*arg)
            elif kind == "slice":
                d, a, b, s = arg
                idx = [slice(None)] * t.dim()
                idx[d] = slice(a, b, s)
                t = t[tuple(idx)]
            else:
                raise ValueError(kind)
        return t


def as_in(x):
    return x if isinstance(x, In) else In(x)


def P(base, *dims):
    """Input that is `base.permute(dims)`; base is built with the permuted shape."""
    return In(base, [{"permute": list(dims)}])


def nc(shape, mk):
    """Non-contiguous input of logical `shape`: base of reversed shape, permuted back.

    mk(shape) builds the base tensor."""
    n = len(shape)
    rev = list(reversed(shape))
    base = mk(rev)
    return In(base, [{"permute": list(reversed(range(n)))}])


def sliced(shape, dim, step, mk):
    """Non-contiguous input of logical `shape` obtained by slicing every `step`-th along dim."""
    full = list(shape)
    full[dim] = shape[dim] * step + 1
    base = mk(full)
    return In(base, [{"slice": [dim, 1, 1 + shape[dim] * step, step]}])


def tol_for(t, acc=False):
    return (TOL_ACC if acc else TOL)[t.dtype]


def add(name, op, args, inputs, fn, tol=None, acc=False):
    """Register a case: fn(*views) -> tensor | tuple/list of tensors."""
    assert name not in NAMES, name
    assert all(c.isalnum() or c == "_" for c in name), name
    NAMES.add(name)
    ins = [as_in(x) for x in inputs]
    views = [x.tensor() for x in ins]
    outs = fn(*views)
    if isinstance(outs, torch.Tensor):
        outs = [outs]
    outs = list(outs)
    in_entries = []
    for i, x in enumerate(ins):
        key = f"{name}.in{i}"
        TENSORS[key] = x.base.detach().clone().contiguous()
        in_entries.append({"key": key, "view": x.view})
    out_keys = []
    for i, o in enumerate(outs):
        key = f"{name}.out{i}"
        TENSORS[key] = o.detach().clone().contiguous()
        out_keys.append(key)
    if tol is None:
        # the loosest default among outputs
        tols = [tol_for(o, acc) for o in outs]
        tol = (max(t[0] for t in tols), max(t[1] for t in tols))
    CASES.append({
        "name": name, "op": op, "args": json_args(args), "inputs": in_entries, "outputs": out_keys,
        "rtol": float(tol[0]), "atol": float(tol[1]),
    })


def json_args(v):
    """JSON has no inf/nan: non-finite floats are written as the strings "inf", "-inf", "nan"."""
    if isinstance(v, dict):
        return {k: json_args(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [json_args(x) for x in v]
    if isinstance(v, bool):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def with_special(x, vals):
    """Overwrite the first len(vals) flat entries of x with vals (returns a new tensor)."""
    x = x.clone().reshape(-1)
    v = torch.tensor(vals, dtype=F64).to(x.dtype)
    x[: len(vals)] = v
    return x


# ----------------------------------------------------------------------------- unary


UNARY = {
    "neg": torch.neg,
    "abs": torch.abs,
    "exp": torch.exp,
    "log": torch.log,
    "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt,
    "sin": torch.sin,
    "cos": torch.cos,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "erf": torch.erf,
    "gelu": lambda x: F.gelu(x),
    "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "silu": F.silu,
    "softplus": F.softplus,
    "recip": torch.reciprocal,
    "square": torch.square,
    "sign": torch.sign,
    "floor": torch.floor,
    "ceil": torch.ceil,
    "round": torch.round,
}


def unary_input(r, op, shape, dtype):
    if op in ("log", "sqrt", "rsqrt"):
        return r.uniform(0.05, 5.0, *shape, dtype=dtype)
    if op == "recip":
        mag = r.uniform(0.2, 5.0, *shape, dtype=F64)
        sgn = torch.where(r.uniform(0, 1, *shape, dtype=F64) < 0.5, -1.0, 1.0)
        return (mag * sgn).to(dtype)
    if op in ("floor", "ceil", "round"):
        x = r.randn(*shape, dtype=F64, scale=3.0)
        x = x.reshape(-1)
        n = x.numel()
        # exact halves (ties for round: half-to-even) and integers
        halves = torch.arange(-3.5, 3.6, 1.0, dtype=F64)[: n // 2]
        x[: halves.numel()] = halves
        if n > halves.numel() + 2:
            x[halves.numel()] = 2.0
            x[halves.numel() + 1] = -0.25
        return x.reshape(shape).to(dtype)
    if op == "softplus":
        return r.randn(*shape, dtype=dtype, scale=8.0)
    if op == "exp":
        return r.randn(*shape, dtype=dtype, scale=2.0)
    return r.randn(*shape, dtype=dtype, scale=2.5)


def gen_unary():
    for op, fn in UNARY.items():
        # f32 contiguous
        name = f"{op}_f32"
        r = Rng(name)
        add(name, op, {}, [unary_input(r, op, [4, 5], F32)], fn)
        # f32 non-contiguous (transposed view)
        name = f"{op}_f32_transposed"
        r = Rng(name)
        add(name, op, {}, [P(unary_input(r, op, [6, 3], F32), 1, 0)], fn)
        # f64
        name = f"{op}_f64"
        r = Rng(name)
        add(name, op, {}, [unary_input(r, op, [3, 7], F64)], fn)
    # f32 0-d and sliced views on a few
    for op in ("exp", "tanh", "neg", "sqrt", "relu"):
        name = f"{op}_f32_scalar0d"
        r = Rng(name)
        add(name, op, {}, [unary_input(r, op, [], F32)], UNARY[op])
        name = f"{op}_f32_sliced"
        r = Rng(name)
        add(name, op, {}, [sliced([3, 4], 1, 2, lambda s: unary_input(r, op, s, F32))], UNARY[op])
    # half precisions: f16/bf16 math is computed in f32 and rounded once (PyTorch CPU)
    for dt in (F16, BF16):
        for op in ("exp", "log", "sqrt", "sin", "tanh", "sigmoid", "erf", "gelu", "gelu_tanh", "silu", "softplus",
                   "recip", "neg", "abs", "relu", "round", "rsqrt"):
            name = f"{op}_{DTYPE_NAME[dt]}"
            r = Rng(name)
            add(name, op, {}, [unary_input(r, op, [3, 5], dt)], UNARY[op])
    # integers
    for dt in (I64, I32):
        for op in ("neg", "abs", "sign", "square", "relu"):
            name = f"{op}_{DTYPE_NAME[dt]}"
            r = Rng(name)
            x = r.randint(-20, 21, 4, 5, dtype=dt)
            x = with_special(x, [0, -1, 1, 20, -20]).reshape(4, 5)
            add(name, op, {}, [x], UNARY[op])
    # special values (inf, nan, signed zero, overflow)
    inf, nan = math.inf, math.nan
    special = [0.0, -0.0, 1.0, -1.0, inf, -inf, nan, 88.0, -88.0, 100.0, -100.0, 1e-30, 30.0, -30.0, 0.5, -0.5]
    for op in ("exp", "log", "sqrt", "rsqrt", "recip", "tanh", "sigmoid", "softplus", "relu", "abs", "neg",
               "floor", "ceil", "round", "square", "sin"):
        vals = [v for v in special if not (op == "sin" and math.isinf(v))]
        name = f"{op}_f32_special"
        add(name, op, {}, [torch.tensor(vals, dtype=F32)], UNARY[op])
    finite = [v for v in special if math.isfinite(v)]
    for op in ("erf", "gelu", "gelu_tanh", "silu", "sign", "sigmoid"):
        name = f"{op}_f32_finite_extremes"
        add(name, op, {}, [torch.tensor(finite, dtype=F32)], UNARY[op])

    # clamp
    def clamp_case(name, x, lo, hi):
        add(name, "clamp", {"min": lo, "max": hi}, [x], lambda t: torch.clamp(t, min=lo, max=hi))

    r = Rng("clamp")
    clamp_case("clamp_f32_both", r.randn(4, 5, scale=2.0), -1.0, 1.0)
    clamp_case("clamp_f32_min_only", r.randn(4, 5, scale=2.0), -0.5, None)
    clamp_case("clamp_f32_max_only", r.randn(4, 5, scale=2.0), None, 0.25)
    clamp_case("clamp_f32_transposed", P(r.randn(5, 3, scale=2.0), 1, 0), -1.5, 0.5)
    clamp_case("clamp_f64", r.randn(3, 4, dtype=F64, scale=2.0), -0.75, 1.25)
    clamp_case("clamp_f16", r.randn(3, 4, dtype=F16, scale=2.0), -1.0, 1.0)
    clamp_case("clamp_bf16", r.randn(3, 4, dtype=BF16, scale=2.0), -1.0, 1.0)
    clamp_case("clamp_f32_nan", torch.tensor([math.nan, -5.0, 5.0, 0.0, math.inf, -math.inf]), -1.0, 1.0)
    for dt in (I64, I32):
        clamp_case(f"clamp_{DTYPE_NAME[dt]}", r.randint(-10, 11, 4, 5, dtype=dt), -3, 4)
        clamp_case(f"clamp_{DTYPE_NAME[dt]}_min_only", r.randint(-10, 11, 4, 5, dtype=dt), 0, None)


# ----------------------------------------------------------------------------- binary

BINARY = {
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
}

SCALAR = {
    "add_scalar": lambda x, s: x + s,
    "sub_scalar": lambda x, s: x - s,
    "mul_scalar": lambda x, s: x * s,
    "div_scalar": lambda x, s: x / s,
    "pow_scalar": lambda x, s: torch.pow(x, s),
    "maximum_scalar": lambda x, s: torch.clamp(x, min=s),
    "minimum_scalar": lambda x, s: torch.clamp(x, max=s),
}


def bin_inputs(r, op, dtype):
    """Input makers (shape -> tensor) for the lhs / rhs of binary op `op`."""
    def mk_lhs(s):
        if op == "pow":
            return r.uniform(0.1, 3.0, *s, dtype=dtype)
        return r.randn(*s, dtype=dtype, scale=2.0)

    def mk_rhs(s):
        if op == "pow":
            return r.uniform(-2.0, 2.5, *s, dtype=dtype)
        if op == "div":
            mag = r.uniform(0.3, 3.0, *s, dtype=F64)
            sgn = torch.where(r.uniform(0, 1, *s, dtype=F64) < 0.5, -1.0, 1.0)
            return (mag * sgn).to(dtype)
        return r.randn(*s, dtype=dtype, scale=2.0)

    return mk_lhs, mk_rhs


def gen_binary():
    for op, fn in BINARY.items():
        def both(name, sa, sb, dtype=F32, a_nc=False, b_nc=False, acc=False):
            r = Rng(name)
            mk_a, mk_b = bin_inputs(r, op, dtype)
            a = nc(sa, mk_a) if a_nc else mk_a(sa)
            b = nc(sb, mk_b) if b_nc else mk_b(sb)
            add(name, op, {}, [a, b], fn)

        both(f"{op}_f32_same", [3, 4], [3, 4])
        both(f"{op}_f32_bcast_3x1x4_5x4", [3, 1, 4], [5, 4])
        both(f"{op}_f32_bcast_row", [4, 1], [1, 5])
        both(f"{op}_f32_scalar_rhs", [3, 4], [])
        both(f"{op}_f32_scalar_lhs", [], [2, 3])
        both(f"{op}_f32_0d_0d", [], [])
        both(f"{op}_f32_noncontig", [3, 4], [3, 4], a_nc=True, b_nc=True)
        both(f"{op}_f32_noncontig_bcast", [2, 3, 4], [3, 1], a_nc=True)
        both(f"{op}_f32_zero_size", [0, 4], [0, 4])
        both(f"{op}_f32_zero_size_bcast", [0, 4], [1, 4])
        both(f"{op}_f32_one_size", [1, 1], [1, 1])
        both(f"{op}_f32_one_size_bcast", [1, 1], [3, 2])
        both(f"{op}_f64_bcast", [2, 1, 3], [4, 3], dtype=F64)
        both(f"{op}_f16", [3, 4], [3, 4], dtype=F16)
        both(f"{op}_bf16_bcast", [3, 1], [3, 4], dtype=BF16)
        # expanded (stride-0) operand
        name = f"{op}_f32_expanded"
        r = Rng(name)
        mk_a, mk_b = bin_inputs(r, op, F32)
        add(name, op, {}, [mk_a([3, 4]), In(mk_b([1, 4]), [{"expand": [3, 4]}])], fn)
        # sliced operand
        name = f"{op}_f32_sliced"
        r = Rng(name)
        mk_a, mk_b = bin_inputs(r, op, F32)
        add(name, op, {}, [sliced([3, 4], 0, 2, mk_a), sliced([3, 4], 1, 3, mk_b)], fn)

    # integer binary ops (same dtype); division excluded (true division promotes in torch)
    for dt in (I64, I32):
        for op in ("add", "sub", "mul", "maximum", "minimum"):
            name = f"{op}_{DTYPE_NAME[dt]}_bcast"
            r = Rng(name)
            add(name, op, {}, [r.randint(-50, 51, 3, 4, dtype=dt), r.randint(-50, 51, 4, dtype=dt)], BINARY[op])
    name = "pow_i64"
    r = Rng(name)
    add(name, "pow", {}, [r.randint(-4, 5, 3, 4), r.randint(0, 4, 3, 4)], torch.pow)
    for op in ("add", "maximum", "minimum"):
        name = f"{op}_u8"
        r = Rng(name)
        add(name, op, {}, [r.randint(0, 100, 3, 4, dtype=U8), r.randint(0, 100, 3, 4, dtype=U8)], BINARY[op])
    # NaN propagation of maximum/minimum
    nan = math.nan
    a = torch.tensor([nan, 1.0, nan, -2.0, 3.0])
    b = torch.tensor([0.0, nan, nan, -3.0, 3.0])
    add("maximum_f32_nan", "maximum", {}, [a, b], torch.maximum)
    add("minimum_f32_nan", "minimum", {}, [a, b], torch.minimum)
    add("div_f32_by_zero", "div", {}, [torch.tensor([1.0, -1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 0.0, -0.0])],
        torch.div)

    # scalar forms
    svals = {
        "add_scalar": 2.5, "sub_scalar": -1.25, "mul_scalar": -3.0, "div_scalar": 4.0,
        "pow_scalar": 2.5, "maximum_scalar": 0.25, "minimum_scalar": -0.5,
    }
    for op, fn in SCALAR.items():
        s = svals[op]

        def mk(r, shape, dt):
            if op == "pow_scalar":
                return r.uniform(0.1, 3.0, *shape, dtype=dt)
            return r.randn(*shape, dtype=dt, scale=2.0)

        for suffix, shape, dt, view in (("f32", [3, 4], F32, None), ("f32_transposed", [3, 4], F32, "nc"),
                                         ("f32_0d", [], F32, None), ("f32_zero_size", [0, 4], F32, None),
                                         ("f64", [2, 5], F64, None), ("f16", [2, 5], F16, None),
                                         ("bf16", [2, 5], BF16, None)):
            name = f"{op}_{suffix}"
            r = Rng(name)
            x = nc(shape, lambda sh: mk(r, sh, dt)) if view == "nc" else mk(r, shape, dt)
            add(name, op, {"scalar": s}, [x], lambda t, s=s, fn=fn: fn(t, s))
    # pow_scalar with other exponents (integer exponent on negative bases, sqrt, negative exponent)
    for e in (2.0, 3.0, 0.5, -1.0, 0.0):
        name = f"pow_scalar_f32_exp_{str(e).replace('.', 'p').replace('-', 'm')}"
        r = Rng(name)
        if e in (2.0, 3.0, 0.0):
            x = r.randn(3, 4, scale=2.0)
        else:
            x = r.uniform(0.1, 3.0, 3, 4)
        add(name, "pow_scalar", {"scalar": e}, [x], lambda t, e=e: torch.pow(t, e))
    # integer scalar ops (integer-valued scalars keep the integer dtype, as in torch)
    for dt in (I64, I32):
        for op, s in (("add_scalar", 3), ("sub_scalar", 7), ("mul_scalar", -2), ("maximum_scalar", 0),
                      ("minimum_scalar", 5)):
            name = f"{op}_{DTYPE_NAME[dt]}"
            r = Rng(name)
            add(name, op, {"scalar": float(s)}, [r.randint(-20, 21, 3, 4, dtype=dt)],
                lambda t, s=s, fn=SCALAR[op]: fn(t, s))


# ----------------------------------------------------------------------------- comparisons / where

CMP = {"eq": torch.eq, "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt, "ge": torch.ge}


def gen_compare():
    for op, fn in CMP.items():
        # small-integer-valued floats -> many ties
        name = f"{op}_f32_ties"
        r = Rng(name)
        add(name, op, {}, [r.randint(-2, 3, 4, 5, dtype=F32), r.randint(-2, 3, 4, 5, dtype=F32)], fn)
        name = f"{op}_f32_bcast"
        r = Rng(name)
        add(name, op, {}, [r.randint(-2, 3, 3, 1, 4, dtype=F32), r.randint(-2, 3, 5, 4, dtype=F32)], fn)
        name = f"{op}_f32_noncontig_scalar"
        r = Rng(name)
        add(name, op, {}, [nc([3, 4], lambda s: r.randint(-2, 3, *s, dtype=F32)), torch.tensor(0.0)], fn)
        name = f"{op}_i64"
        r = Rng(name)
        add(name, op, {}, [r.randint(-3, 4, 3, 4), r.randint(-3, 4, 4)], fn)
        name = f"{op}_f64"
        r = Rng(name)
        add(name, op, {}, [r.randint(-2, 3, 2, 3, dtype=F64), r.randint(-2, 3, 2, 3, dtype=F64)], fn)
        name = f"{op}_bf16"
        r = Rng(name)
        add(name, op, {}, [r.randint(-2, 3, 2, 3, dtype=BF16), r.randint(-2, 3, 2, 3, dtype=BF16)], fn)
        name = f"{op}_f32_nan"
        nan = math.nan
        add(name, op, {}, [torch.tensor([nan, 1.0, nan, 0.0, -0.0]), torch.tensor([1.0, nan, nan, -0.0, 0.0])], fn)

    # where_cond: cond.where_cond(on_true, on_false)
    def wc(c, a, b):
        return torch.where(c, a, b)

    r = Rng("where")
    add("where_f32_same", "where_cond", {},
        [r.uniform(0, 1, 3, 4) < 0.5, r.randn(3, 4), r.randn(3, 4)], wc)
    add("where_f32_bcast_all", "where_cond", {},
        [r.uniform(0, 1, 3, 1) < 0.5, r.randn(1, 4), torch.tensor(-1.0)], wc)
    add("where_f32_bcast_cond", "where_cond", {},
        [r.uniform(0, 1, 4) < 0.5, r.randn(2, 3, 4), r.randn(2, 3, 4)], wc)
    add("where_f32_noncontig", "where_cond", {},
        [nc([3, 4], lambda s: r.uniform(0, 1, *s) < 0.5), nc([3, 4], lambda s: r.randn(*s)), r.randn(3, 4)], wc)
    add("where_i64", "where_cond", {},
        [r.uniform(0, 1, 2, 5) < 0.5, r.randint(-9, 10, 2, 5), r.randint(-9, 10, 1, 5)], wc)
    add("where_f64", "where_cond", {},
        [r.uniform(0, 1, 2, 3) < 0.5, r.randn(2, 3, dtype=F64), r.randn(2, 3, dtype=F64)], wc)
    add("where_f16", "where_cond", {},
        [r.uniform(0, 1, 2, 3) < 0.5, r.randn(2, 3, dtype=F16), r.randn(2, 3, dtype=F16)], wc)


# ----------------------------------------------------------------------------- reductions

def gen_reductions():
    dim_sets = [[0], [1], [-1], [0, 2], [-1, -3], [0, 1, 2]]

    def dname(ds):
        return "_".join(("m" + str(-d)) if d < 0 else str(d) for d in ds)

    red = {
        "sum": lambda x, ds, k: torch.sum(x, ds, keepdim=k),
        "mean": lambda x, ds, k: torch.mean(x, ds, keepdim=k),
        "max": lambda x, ds, k: torch.amax(x, ds, keepdim=k),
        "min": lambda x, ds, k: torch.amin(x, ds, keepdim=k),
        "prod": None,  # torch.prod reduces one dim at a time
        "logsumexp": lambda x, ds, k: torch.logsumexp(x, ds, keepdim=k),
    }

    def prod(x, ds, k):
        nd = x.dim()
        ds = sorted((d % nd for d in ds), reverse=True)
        for d in ds:
            x = torch.prod(x, d, keepdim=True)
        if not k:
            for d in ds:
                x = x.squeeze(d)
        return x

    red["prod"] = prod
    for op, fn in red.items():
        for ds in dim_sets:
            for k in (False, True):
                name = f"{op}_f32_d{dname(ds)}_{'keep' if k else 'nokeep'}"
                r = Rng(name)
                if op == "prod":
                    x = r.uniform(0.6, 1.5, 3, 4, 5)
                else:
                    x = r.randn(3, 4, 5, scale=2.0)
                add(name, op, {"dims": ds, "keepdim": k}, [x], lambda t, ds=ds, k=k, fn=fn: fn(t, ds, k), acc=True)
        # non-contiguous input
        name = f"{op}_f32_noncontig"
        r = Rng(name)
        mk = (lambda s: r.uniform(0.6, 1.5, *s)) if op == "prod" else (lambda s: r.randn(*s, scale=2.0))
        add(name, op, {"dims": [1], "keepdim": False}, [nc([4, 3, 5], mk)], lambda t, fn=fn: fn(t, [1], False),
            acc=True)
        name = f"{op}_f32_sliced"
        r = Rng(name)
        mk = (lambda s: r.uniform(0.6, 1.5, *s)) if op == "prod" else (lambda s: r.randn(*s, scale=2.0))
        add(name, op, {"dims": [0, 1], "keepdim": True}, [sliced([4, 6], 1, 2, mk)],
            lambda t, fn=fn: fn(t, [0, 1], True), acc=True)
        # f64
        name = f"{op}_f64"
        r = Rng(name)
        x = r.uniform(0.6, 1.5, 4, 6, dtype=F64) if op == "prod" else r.randn(4, 6, dtype=F64)
        add(name, op, {"dims": [1], "keepdim": False}, [x], lambda t, fn=fn: fn(t, [1], False), acc=True)
        # 1-d and 0-size-result shapes
        name = f"{op}_f32_1d"
        r = Rng(name)
        x = r.uniform(0.6, 1.5, 7) if op == "prod" else r.randn(7)
        add(name, op, {"dims": [0], "keepdim": False}, [x], lambda t, fn=fn: fn(t, [0], False), acc=True)
    # reductions over zero-size dims that are well defined
    add("sum_f32_zero_size_dim", "sum", {"dims": [0], "keepdim": False}, [torch.zeros(0, 4)],
        lambda t: torch.sum(t, [0]))
    add("prod_f32_zero_size_dim", "prod", {"dims": [0], "keepdim": True}, [torch.zeros(0, 3)],
        lambda t: torch.prod(t, 0, keepdim=True))
    add("sum_f32_reduce_nonempty_of_empty", "sum", {"dims": [1], "keepdim": False}, [torch.zeros(0, 4)],
        lambda t: torch.sum(t, [1]))
    # integer / half reductions
    r = Rng("red_int")
    add("sum_i64", "sum", {"dims": [1], "keepdim": False}, [r.randint(-100, 100, 3, 6)], lambda t: torch.sum(t, [1]))
    add("prod_i64", "prod", {"dims": [0], "keepdim": False}, [r.randint(-4, 5, 3, 5)], lambda t: torch.prod(t, 0))
    for dt in (I64, I32, U8):
        lo = 0 if dt == U8 else -50
        add(f"max_{DTYPE_NAME[dt]}", "max", {"dims": [1], "keepdim": True}, [r.randint(lo, 50, 3, 6, dtype=dt)],
            lambda t: torch.amax(t, [1], keepdim=True))
        add(f"min_{DTYPE_NAME[dt]}", "min", {"dims": [0], "keepdim": False}, [r.randint(lo, 50, 3, 6, dtype=dt)],
            lambda t: torch.amin(t, [0]))
    for dt in (F16, BF16):
        nm = DTYPE_NAME[dt]
        add(f"sum_{nm}", "sum", {"dims": [1], "keepdim": False}, [r.randn(3, 16, dtype=dt)],
            lambda t: torch.sum(t, [1]), acc=True)
        add(f"mean_{nm}", "mean", {"dims": [0, 1], "keepdim": False}, [r.randn(4, 8, dtype=dt)],
            lambda t: torch.mean(t, [0, 1]), acc=True)
        add(f"max_{nm}", "max", {"dims": [-1], "keepdim": False}, [r.randn(3, 7, dtype=dt)],
            lambda t: torch.amax(t, [-1]))
        add(f"softmax_{nm}", "softmax", {"dim": -1}, [r.randn(3, 7, dtype=dt, scale=3.0)],
            lambda t: torch.softmax(t, -1), acc=True)
        add(f"log_softmax_{nm}", "log_softmax", {"dim": 1}, [r.randn(3, 7, dtype=dt, scale=3.0)],
            lambda t: torch.log_softmax(t, 1), acc=True)
        add(f"var_{nm}", "var", {"dims": [1], "correction": 1, "keepdim": False}, [r.randn(3, 9, dtype=dt)],
            lambda t: torch.var(t, [1], correction=1), acc=True)
    # a large reduction (float accumulation order matters -> looser tolerance)
    add("sum_f32_large", "sum", {"dims": [1], "keepdim": False}, [r.randn(3, 4000, shift=0.5)],
        lambda t: torch.sum(t, [1]), tol=(1e-4, 1e-3))
    add("mean_f32_large", "mean", {"dims": [0], "keepdim": False}, [r.randn(5000, 2, shift=1.0)],
        lambda t: torch.mean(t, [0]), tol=(1e-4, 1e-5))
    add("sum_all_f32_large", "sum_all", {}, [r.randn(100, 100, shift=0.1)], lambda t: torch.sum(t),
        tol=(1e-4, 1e-2))
    # NaN propagation
    nan = math.nan
    xn = torch.tensor([[1.0, nan, 3.0], [4.0, 5.0, 6.0]])
    add("max_f32_nan", "max", {"dims": [1], "keepdim": False}, [xn], lambda t: torch.amax(t, [1]))
    add("min_f32_nan", "min", {"dims": [1], "keepdim": False}, [xn], lambda t: torch.amin(t, [1]))
    add("sum_f32_nan", "sum", {"dims": [1], "keepdim": False}, [xn], lambda t: torch.sum(t, [1]))
    # whole-tensor reductions -> 0-d
    for op, fn in (("sum_all", torch.sum), ("mean_all", torch.mean), ("max_all", torch.max),
                   ("min_all", torch.min)):
        name = f"{op}_f32"
        r = Rng(name)
        add(name, op, {}, [r.randn(3, 4, 5)], fn, acc=True)
        name = f"{op}_f32_noncontig"
        r = Rng(name)
        add(name, op, {}, [nc([4, 6], lambda s: r.randn(*s))], fn, acc=True)
        name = f"{op}_f64"
        r = Rng(name)
        add(name, op, {}, [r.randn(7, dtype=F64)], fn, acc=True)
        name = f"{op}_f32_0d"
        r = Rng(name)
        add(name, op, {}, [r.randn()], fn, acc=True)
        name = f"{op}_f32_expanded"
        r = Rng(name)
        add(name, op, {}, [In(r.randn(1, 5), [{"expand": [4, 5]}])], fn, acc=True)
    r = Rng("all_int")
    add("sum_all_i64", "sum_all", {}, [r.randint(-100, 100, 4, 5)], torch.sum)
    add("max_all_i64", "max_all", {}, [r.randint(-100, 100, 4, 5)], torch.max)
    add("min_all_i32", "min_all", {}, [r.randint(-100, 100, 4, 5, dtype=I32)], torch.min)
    add("max_all_f16", "max_all", {}, [r.randn(4, 5, dtype=F16)], torch.max)
    add("sum_all_f32_zero_size", "sum_all", {}, [torch.zeros(0, 3)], torch.sum)

    # var / std
    for op, fn in (("var", torch.var), ("std", torch.std)):
        for corr in (0, 1):
            for ds, k in (([0], False), ([1], True), ([-1], False), ([0, 2], True), ([0, 1, 2], False)):
                name = f"{op}_f32_c{corr}_d{dname(ds)}_{'keep' if k else 'nokeep'}"
                r = Rng(name)
                add(name, op, {"dims": ds, "correction": corr, "keepdim": k}, [r.randn(3, 4, 5, scale=2.0, shift=1.0)],
                    lambda t, ds=ds, k=k, corr=corr, fn=fn: fn(t, ds, correction=corr, keepdim=k), acc=True)
        name = f"{op}_f64_c1"
        r = Rng(name)
        add(name, op, {"dims": [1], "correction": 1, "keepdim": False}, [r.randn(3, 8, dtype=F64, shift=10.0)],
            lambda t, fn=fn: fn(t, [1], correction=1), acc=True)
        name = f"{op}_f32_noncontig"
        r = Rng(name)
        add(name, op, {"dims": [0], "correction": 1, "keepdim": False}, [nc([6, 4], lambda s: r.randn(*s))],
            lambda t, fn=fn: fn(t, [0], correction=1), acc=True)
        # large mean offset: tests a two-pass / Welford algorithm
        name = f"{op}_f32_offset"
        r = Rng(name)
        add(name, op, {"dims": [1], "correction": 1, "keepdim": False}, [r.randn(3, 50, shift=1000.0)],
            lambda t, fn=fn: fn(t, [1], correction=1), tol=(1e-3, 1e-3))

    # logsumexp stability
    r = Rng("lse")
    add("logsumexp_f32_large", "logsumexp", {"dims": [1], "keepdim": False}, [r.randn(3, 6, scale=500.0)],
        lambda t: torch.logsumexp(t, [1]), acc=True)
    add("logsumexp_f32_very_negative", "logsumexp", {"dims": [-1], "keepdim": True},
        [r.randn(2, 5, scale=10.0, shift=-1000.0)], lambda t: torch.logsumexp(t, [-1], keepdim=True), acc=True)
    ni = -math.inf
    add("logsumexp_f32_neg_inf_row", "logsumexp", {"dims": [1], "keepdim": False},
        [torch.tensor([[ni, ni, ni], [0.0, ni, 1.0]])], lambda t: torch.logsumexp(t, [1]), acc=True)

    # argmax / argmin (first index on ties)
    for op, fn in (("argmax", torch.argmax), ("argmin", torch.argmin)):
        for d in (0, 1, -1, 2):
            for k in (False, True):
                name = f"{op}_f32_ties_d{dname([d])}_{'keep' if k else 'nokeep'}"
                r = Rng(name)
                x = r.randint(-2, 3, 3, 4, 5, dtype=F32)
                add(name, op, {"dim": d, "keepdim": k}, [x], lambda t, d=d, k=k, fn=fn: fn(t, d, keepdim=k))
        name = f"{op}_f32_all_equal"
        add(name, op, {"dim": 1, "keepdim": False}, [torch.ones(3, 5)], lambda t, fn=fn: fn(t, 1))
        name = f"{op}_f32_noncontig"
        r = Rng(name)
        add(name, op, {"dim": 0, "keepdim": False}, [nc([5, 4], lambda s: r.randint(-3, 4, *s, dtype=F32))],
            lambda t, fn=fn: fn(t, 0))
        name = f"{op}_i64"
        r = Rng(name)
        add(name, op, {"dim": 1, "keepdim": False}, [r.randint(-3, 4, 4, 6)], lambda t, fn=fn: fn(t, 1))
        name = f"{op}_f64"
        r = Rng(name)
        add(name, op, {"dim": -1, "keepdim": True}, [r.randn(4, 6, dtype=F64)],
            lambda t, fn=fn: fn(t, -1, keepdim=True))
        name = f"{op}_f16"
        r = Rng(name)
        add(name, op, {"dim": 0, "keepdim": False}, [r.randint(-3, 4, 4, 6, dtype=F16)], lambda t, fn=fn: fn(t, 0))
        name = f"{op}_f32_1d"
        r = Rng(name)
        add(name, op, {"dim": 0, "keepdim": False}, [r.randn(9)], lambda t, fn=fn: fn(t, 0))

    # softmax / log_softmax
    for op, fn in (("softmax", torch.softmax), ("log_softmax", torch.log_softmax)):
        for d in (0, 1, -1):
            name = f"{op}_f32_large_d{dname([d])}"
            r = Rng(name)
            add(name, op, {"dim": d}, [r.randn(4, 6, scale=300.0)], lambda t, d=d, fn=fn: fn(t, d), acc=True)
            name = f"{op}_f32_d{dname([d])}"
            r = Rng(name)
            add(name, op, {"dim": d}, [r.randn(2, 3, 5)], lambda t, d=d, fn=fn: fn(t, d), acc=True)
        name = f"{op}_f32_d1_of3"
        r = Rng(name)
        add(name, op, {"dim": 1}, [r.randn(2, 4, 3, scale=3.0)], lambda t, fn=fn: fn(t, 1), acc=True)
        name = f"{op}_f32_noncontig"
        r = Rng(name)
        add(name, op, {"dim": -1}, [nc([3, 5], lambda s: r.randn(*s, scale=3.0))], lambda t, fn=fn: fn(t, -1),
            acc=True)
        name = f"{op}_f64"
        r = Rng(name)
        add(name, op, {"dim": 1}, [r.randn(3, 5, dtype=F64, scale=50.0)], lambda t, fn=fn: fn(t, 1), acc=True)
        name = f"{op}_f32_neg_inf"
        x = torch.tensor([[0.0, -math.inf, 1.0, 2.0], [-math.inf, 3.0, -math.inf, -math.inf]])
        add(name, op, {"dim": 1}, [x], lambda t, fn=fn: fn(t, 1), acc=True)
        name = f"{op}_f32_1d"
        r = Rng(name)
        add(name, op, {"dim": 0}, [r.randn(10, scale=1000.0)], lambda t, fn=fn: fn(t, 0), acc=True)


# ----------------------------------------------------------------------------- matmul

def gen_matmul():
    def mm(name, sa, sb, dtype=F32, a_view=None, b_view=None, tol=None):
        r = Rng(name)

        def mk(shape, view):
            if view == "T":  # last two dims transposed
                n = len(shape)
                bs = list(shape[:-2]) + [shape[-1], shape[-2]]
                perm = list(range(n - 2)) + [n - 1, n - 2]
                return In(r.randn(*bs, dtype=dtype), [{"permute": perm}])
            if view == "rev":
                return nc(shape, lambda s: r.randn(*s, dtype=dtype))
            return r.randn(*shape, dtype=dtype)

        add(name, "matmul", {}, [mk(sa, a_view), mk(sb, b_view)], torch.matmul, acc=True, tol=tol)

    mm("matmul_2d", [3, 4], [4, 5])
    mm("matmul_2d_big", [17, 33], [33, 9])
    mm("matmul_2d_aT", [3, 4], [4, 5], a_view="T")
    mm("matmul_2d_bT", [3, 4], [4, 5], b_view="T")
    mm("matmul_2d_bothT", [6, 2], [2, 7], a_view="T", b_view="T")
    mm("matmul_1d_1d", [5], [5])
    mm("matmul_1d_2d", [4], [4, 3])
    mm("matmul_2d_1d", [3, 4], [4])
    mm("matmul_1d_3d", [4], [2, 4, 5])
    mm("matmul_3d_1d", [2, 3, 4], [4])
    mm("matmul_3d_2d", [2, 3, 4], [4, 5])
    mm("matmul_2d_3d", [3, 4], [2, 4, 5])
    mm("matmul_3d_3d", [2, 3, 4], [2, 4, 5])
    mm("matmul_bcast_2x1x3x4_5x4x6", [2, 1, 3, 4], [5, 4, 6])
    mm("matmul_bcast_1x3x4_2x4x2", [1, 3, 4], [2, 4, 2])
    mm("matmul_batched_T", [2, 3, 4], [2, 4, 5], a_view="T", b_view="T")
    mm("matmul_batched_rev", [2, 3, 4], [4, 5], a_view="rev")
    mm("matmul_1x1", [1, 1], [1, 1])
    mm("matmul_k1_outer", [4, 1], [1, 3])
    mm("matmul_zero_k", [3, 0], [0, 2])
    mm("matmul_zero_m", [0, 4], [4, 2])
    mm("matmul_f64", [5, 6], [6, 3], dtype=F64)
    mm("matmul_f64_batched", [3, 2, 4], [1, 4, 2], dtype=F64)
    mm("matmul_f16", [3, 8], [8, 4], dtype=F16)
    mm("matmul_bf16", [3, 8], [8, 4], dtype=BF16)
    # expanded (stride-0 batch) operand
    name = "matmul_expanded_batch"
    r = Rng(name)
    add(name, "matmul", {}, [In(r.randn(1, 3, 4), [{"expand": [3, 3, 4]}]), r.randn(3, 4, 2)], torch.matmul,
        acc=True)


# ----------------------------------------------------------------------------- conv

def gen_conv():
    def conv(name, n, cin, cout, hw, k, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, bias=True,
             dtype=F32, x_nc=False, tol=None):
        r = Rng(name)
        kh, kw = (k, k) if isinstance(k, int) else k
        h, w = (hw, hw) if isinstance(hw, int) else hw
        fan_in = cin // groups * kh * kw
        xs = [n, cin, h, w]
        if x_nc:  # NHWC storage viewed as NCHW
            x = In(r.randn(n, h, w, cin, dtype=dtype), [{"permute": [0, 3, 1, 2]}])
        else:
            x = r.randn(*xs, dtype=dtype)
        wt = r.randn(cout, cin // groups, kh, kw, dtype=dtype, scale=1.0 / math.sqrt(fan_in))
        ins = [x, wt]
        if bias:
            ins.append(r.randn(cout, dtype=dtype))
        args = {"stride": list(stride), "padding": list(padding), "dilation": list(dilation), "groups": groups}

        def fn(x, w, b=None):
            return F.conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)

        add(name, "conv2d", args, ins, fn, acc=True, tol=tol)

    conv("conv2d_n2_3to10_k3_32x32", 2, 3, 10, 32, 3)
    conv("conv2d_lenet_c1", 2, 1, 6, 28, 5, padding=(2, 2))
    conv("conv2d_lenet_c3", 2, 6, 16, 14, 5)
    conv("conv2d_stride2_pad1_nobias", 2, 3, 4, 9, 3, stride=(2, 2), padding=(1, 1), bias=False)
    conv("conv2d_dilation2", 1, 2, 3, 10, 3, dilation=(2, 2))
    conv("conv2d_dilation_pad", 1, 2, 3, 8, 3, dilation=(2, 3), padding=(2, 3))
    conv("conv2d_groups2", 2, 4, 6, 7, 3, groups=2, padding=(1, 1))
    conv("conv2d_depthwise", 1, 3, 3, 6, 3, groups=3)
    conv("conv2d_depthwise_mult2", 1, 3, 6, 6, 3, groups=3, bias=False)
    conv("conv2d_asym", 1, 2, 3, (9, 7), (3, 2), stride=(2, 1), padding=(1, 0))
    conv("conv2d_asym2", 2, 3, 2, (6, 11), (2, 4), stride=(1, 3), padding=(0, 2), dilation=(1, 2))
    conv("conv2d_1x1", 2, 5, 4, 4, 1)
    conv("conv2d_1x1_stride2", 1, 3, 2, 5, 1, stride=(2, 2), bias=False)
    conv("conv2d_nhwc_input", 2, 3, 4, 6, 3, x_nc=True, padding=(1, 1))
    conv("conv2d_kernel_eq_input", 1, 2, 3, 4, 4)
    conv("conv2d_big_pad", 1, 1, 2, 3, 3, padding=(3, 3))
    conv("conv2d_stride_gt_kernel", 1, 2, 2, 9, 2, stride=(3, 3))
    conv("conv2d_groups_stride_dil", 2, 6, 4, 11, 3, stride=(2, 2), padding=(2, 1), dilation=(2, 1), groups=2)
    conv("conv2d_f64", 2, 3, 4, 7, 3, padding=(1, 1), dtype=F64)
    conv("conv2d_f16", 1, 2, 3, 5, 3, dtype=F16, tol=(2e-2, 2e-2))
    # non-contiguous (transposed) weight
    name = "conv2d_weight_view"
    r = Rng(name)
    wbase = r.randn(3, 2, 3, 4, scale=0.3)  # [kh, kw, cin, cout]-ish storage
    add(name, "conv2d", {"stride": [1, 1], "padding": [0, 0], "dilation": [1, 1], "groups": 1},
        [r.randn(1, 3, 5, 5), In(wbase, [{"permute": [3, 2, 0, 1]}])],
        lambda x, w: F.conv2d(x, w), acc=True)

    def convt(name, n, cin, cout, hw, k, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
              groups=1, bias=True, dtype=F32, tol=None):
        r = Rng(name)
        kh, kw = (k, k) if isinstance(k, int) else k
        h, w = (hw, hw) if isinstance(hw, int) else hw
        x = r.randn(n, cin, h, w, dtype=dtype)
        wt = r.randn(cin, cout // groups, kh, kw, dtype=dtype, scale=0.4)
        ins = [x, wt]
        if bias:
            ins.append(r.randn(cout, dtype=dtype))
        args = {"stride": list(stride), "padding": list(padding), "output_padding": list(output_padding),
                "dilation": list(dilation), "groups": groups}

        def fn(x, w, b=None):
            return F.conv_transpose2d(x, w, b, stride=stride, padding=padding, output_padding=output_padding,
                                      groups=groups, dilation=dilation)

        add(name, "conv_transpose2d", args, ins, fn, acc=True, tol=tol)

    convt("convt_basic", 2, 3, 4, 5, 3)
    convt("convt_stride2", 1, 2, 3, 4, 3, stride=(2, 2))
    convt("convt_stride2_pad1_outpad1", 2, 3, 2, 5, 3, stride=(2, 2), padding=(1, 1), output_padding=(1, 1))
    convt("convt_k2_s2_nobias", 1, 4, 2, 4, 2, stride=(2, 2), bias=False)
    convt("convt_dilation2", 1, 2, 3, 4, 3, dilation=(2, 2))
    convt("convt_dilation_stride_pad", 1, 2, 2, 5, 3, stride=(2, 2), padding=(2, 2), dilation=(2, 2),
          output_padding=(1, 1))
    convt("convt_groups2", 2, 4, 6, 4, 3, groups=2, stride=(2, 2), padding=(1, 1))
    convt("convt_groups_depthwise", 1, 3, 3, 4, 3, groups=3, bias=False)
    convt("convt_asym", 1, 2, 3, (3, 5), (2, 3), stride=(3, 2), padding=(1, 0), output_padding=(2, 1))
    convt("convt_asym_dil", 2, 3, 2, (4, 3), (3, 2), stride=(1, 2), padding=(0, 1), dilation=(2, 1),
          output_padding=(0, 1))
    convt("convt_1x1", 1, 3, 2, 3, 1)
    convt("convt_f64", 1, 2, 3, 4, 3, stride=(2, 2), padding=(1, 1), dtype=F64)
    convt("convt_lenet_like", 2, 16, 6, 5, 5, stride=(2, 2), padding=(1, 1), output_padding=(1, 1))


# ----------------------------------------------------------------------------- pooling

def gen_pool():
    def mp(name, shape, kernel, stride=None, padding=(0, 0), dilation=(1, 1), ceil_mode=False, ties=False,
           x_nc=False, dtype=F32):
        stride = stride or kernel
        args = {"kernel": list(kernel), "stride": list(stride), "padding": list(padding),
                "dilation": list(dilation), "ceil_mode": ceil_mode}
        for suffix, op in (("", "max_pool2d"), ("_idx", "max_pool2d_with_indices")):
            nm = name + suffix
            r = Rng(name)
            if ties:
                mk = lambda s: r.randint(-2, 3, *s, dtype=dtype)
            else:
                mk = lambda s: r.randn(*s, dtype=dtype, shift=-3.0)  # mostly negative: padding must be -inf
            if x_nc:
                n, c, h, w = shape
                x = In(mk([n, h, w, c]), [{"permute": [0, 3, 1, 2]}])
            else:
                x = mk(shape)

            def fn(t, op=op):
                v, i = F.max_pool2d(t, kernel, stride, padding, dilation, ceil_mode=ceil_mode, return_indices=True)
                return (v, i) if op == "max_pool2d_with_indices" else v

            add(nm, op, args, [x], fn)

    mp("maxpool_k2", [2, 3, 6, 6], (2, 2))
    mp("maxpool_k3_s2", [1, 2, 7, 7], (3, 3), (2, 2))
    mp("maxpool_k3_s1_pad1", [1, 2, 5, 5], (3, 3), (1, 1), padding=(1, 1))
    mp("maxpool_k2_s1", [1, 1, 4, 5], (2, 2), (1, 1))
    mp("maxpool_dil2", [1, 2, 8, 8], (2, 2), (1, 1), dilation=(2, 2))
    mp("maxpool_dil_pad", [1, 1, 7, 9], (3, 2), (2, 2), padding=(1, 1), dilation=(2, 3))
    mp("maxpool_ceil", [1, 2, 7, 7], (2, 2), (2, 2), ceil_mode=True)
    mp("maxpool_ceil_k3_s2_pad1", [1, 1, 6, 8], (3, 3), (2, 2), padding=(1, 1), ceil_mode=True)
    mp("maxpool_ceil_noeffect", [1, 1, 6, 6], (2, 2), (2, 2), ceil_mode=True)
    mp("maxpool_asym", [2, 1, 9, 6], (3, 2), (2, 1), padding=(1, 0))
    mp("maxpool_ties", [1, 2, 6, 6], (3, 3), (2, 2), ties=True)
    mp("maxpool_ties_overlap", [1, 1, 5, 5], (2, 2), (1, 1), ties=True)
    mp("maxpool_nhwc_input", [2, 3, 6, 4], (2, 2), x_nc=True)
    mp("maxpool_f64", [1, 2, 5, 5], (2, 2), (2, 2), ceil_mode=True, dtype=F64)
    mp("maxpool_lenet", [2, 6, 28, 28], (2, 2))

    def ap(name, shape, kernel, stride=None, padding=(0, 0), ceil_mode=False, count_include_pad=True, dtype=F32,
           x_nc=False):
        stride = stride or kernel
        r = Rng(name)
        if x_nc:
            n, c, h, w = shape
            x = In(r.randn(n, h, w, c, dtype=dtype), [{"permute": [0, 3, 1, 2]}])
        else:
            x = r.randn(*shape, dtype=dtype, shift=1.0)
        args = {"kernel": list(kernel), "stride": list(stride), "padding": list(padding), "ceil_mode": ceil_mode,
                "count_include_pad": count_include_pad}
        add(name, "avg_pool2d", args, [x],
            lambda t: F.avg_pool2d(t, kernel, stride, padding, ceil_mode=ceil_mode,
                                   count_include_pad=count_include_pad), acc=True)

    ap("avgpool_k2", [2, 3, 6, 6], (2, 2))
    ap("avgpool_k3_s2", [1, 2, 7, 7], (3, 3), (2, 2))
    for cip in (True, False):
        tag = "incl" if cip else "excl"
        ap(f"avgpool_pad1_{tag}", [1, 2, 5, 5], (3, 3), (1, 1), padding=(1, 1), count_include_pad=cip)
        ap(f"avgpool_k3_s2_pad1_{tag}", [1, 1, 6, 7], (3, 3), (2, 2), padding=(1, 1), count_include_pad=cip)
        ap(f"avgpool_ceil_{tag}", [1, 2, 7, 7], (2, 2), (2, 2), ceil_mode=True, count_include_pad=cip)
        ap(f"avgpool_ceil_pad_{tag}", [1, 1, 6, 8], (3, 3), (2, 2), padding=(1, 1), ceil_mode=True,
           count_include_pad=cip)
        ap(f"avgpool_asym_pad_{tag}", [2, 1, 7, 5], (3, 2), (2, 1), padding=(1, 1), count_include_pad=cip)
    ap("avgpool_nhwc_input", [2, 3, 4, 6], (2, 2), x_nc=True)
    ap("avgpool_f64", [1, 2, 5, 5], (2, 2), (1, 1), dtype=F64)
    ap("avgpool_f16", [1, 2, 4, 4], (2, 2), dtype=F16)
    ap("avgpool_ceil_k2_s1", [1, 1, 3, 4], (2, 2), (1, 1), ceil_mode=True)

    def aap(name, shape, out, dtype=F32, x_nc=False):
        r = Rng(name)
        if x_nc:
            n, c, h, w = shape
            x = In(r.randn(n, h, w, c, dtype=dtype), [{"permute": [0, 3, 1, 2]}])
        else:
            x = r.randn(*shape, dtype=dtype)
        add(name, "adaptive_avg_pool2d", {"output": list(out)}, [x], lambda t: F.adaptive_avg_pool2d(t, out),
            acc=True)

    aap("adaptive_7to3", [2, 3, 7, 7], (3, 3))
    aap("adaptive_5to2", [1, 2, 5, 5], (2, 2))
    aap("adaptive_8x6_to_3x4", [1, 2, 8, 6], (3, 4))
    aap("adaptive_global", [2, 4, 5, 3], (1, 1))
    aap("adaptive_identity", [1, 2, 4, 4], (4, 4))
    aap("adaptive_upsample_3to5", [1, 1, 3, 3], (5, 5))
    aap("adaptive_divisible_6to3", [1, 2, 6, 6], (3, 3))
    aap("adaptive_nhwc_input", [2, 3, 7, 5], (2, 3), x_nc=True)
    aap("adaptive_f64", [1, 2, 7, 5], (3, 2), dtype=F64)


# ----------------------------------------------------------------------------- joining / indexing

def gen_join_index():
    r = Rng("cat")
    add("cat_d0", "cat", {"dim": 0}, [r.randn(2, 3), r.randn(4, 3)], lambda a, b: torch.cat([a, b], 0))
    add("cat_d1", "cat", {"dim": 1}, [r.randn(2, 3), r.randn(2, 1), r.randn(2, 4)],
        lambda *ts: torch.cat(ts, 1))
    add("cat_dm1_3d", "cat", {"dim": -1}, [r.randn(2, 3, 2), r.randn(2, 3, 5)], lambda a, b: torch.cat([a, b], -1))
    add("cat_d1_3d_noncontig", "cat", {"dim": 1},
        [nc([2, 3, 4], lambda s: r.randn(*s)), r.randn(2, 2, 4), In(r.randn(2, 1, 4), [{"expand": [2, 3, 4]}])],
        lambda *ts: torch.cat(ts, 1))
    add("cat_with_empty", "cat", {"dim": 0}, [r.randn(2, 3), torch.zeros(0, 3), r.randn(1, 3)],
        lambda *ts: torch.cat(ts, 0))
    add("cat_single", "cat", {"dim": 0}, [r.randn(2, 3)], lambda a: torch.cat([a], 0))
    add("cat_i64", "cat", {"dim": 0}, [r.randint(0, 9, 2, 2), r.randint(0, 9, 1, 2)], lambda a, b: torch.cat([a, b]))
    add("cat_bool", "cat", {"dim": 1}, [r.uniform(0, 1, 2, 2) < 0.5, r.uniform(0, 1, 2, 3) < 0.5],
        lambda a, b: torch.cat([a, b], 1))
    add("cat_f16", "cat", {"dim": 1}, [r.randn(2, 2, dtype=F16), r.randn(2, 3, dtype=F16)],
        lambda a, b: torch.cat([a, b], 1))
    add("cat_u8_1d", "cat", {"dim": 0}, [r.randint(0, 255, 3, dtype=U8), r.randint(0, 255, 4, dtype=U8)],
        lambda a, b: torch.cat([a, b]))

    r = Rng("stack")
    add("stack_d0", "stack", {"dim": 0}, [r.randn(2, 3), r.randn(2, 3)], lambda a, b: torch.stack([a, b], 0))
    add("stack_d1", "stack", {"dim": 1}, [r.randn(2, 3), r.randn(2, 3), r.randn(2, 3)],
        lambda *ts: torch.stack(ts, 1))
    add("stack_d2_end", "stack", {"dim": 2}, [r.randn(2, 3), r.randn(2, 3)], lambda a, b: torch.stack([a, b], 2))
    add("stack_dm1", "stack", {"dim": -1}, [r.randn(4), r.randn(4)], lambda a, b: torch.stack([a, b], -1))
    add("stack_noncontig", "stack", {"dim": 0}, [nc([3, 2], lambda s: r.randn(*s)), r.randn(3, 2)],
        lambda a, b: torch.stack([a, b], 0))
    add("stack_0d", "stack", {"dim": 0}, [r.randn(), r.randn(), r.randn()], lambda *ts: torch.stack(ts, 0))
    add("stack_i32", "stack", {"dim": 1}, [r.randint(0, 9, 3, dtype=I32), r.randint(0, 9, 3, dtype=I32)],
        lambda a, b: torch.stack([a, b], 1))

    r = Rng("split")
    add("split_uneven", "split", {"size": 2, "dim": 1}, [r.randn(3, 5)], lambda t: torch.split(t, 2, 1))
    add("split_even_d0", "split", {"size": 2, "dim": 0}, [r.randn(4, 3)], lambda t: torch.split(t, 2, 0))
    add("split_dm1_noncontig", "split", {"size": 3, "dim": -1}, [nc([2, 7], lambda s: r.randn(*s))],
        lambda t: torch.split(t, 3, -1))
    add("split_size_gt_dim", "split", {"size": 10, "dim": 0}, [r.randn(3, 2)], lambda t: torch.split(t, 10, 0))
    add("chunk_uneven_5_3", "chunk", {"n": 3, "dim": 1}, [r.randn(2, 5)], lambda t: torch.chunk(t, 3, 1))
    add("chunk_6_4_gives_3", "chunk", {"n": 4, "dim": 0}, [r.randn(6, 2)], lambda t: torch.chunk(t, 4, 0))
    add("chunk_even", "chunk", {"n": 2, "dim": -1}, [r.randn(3, 4)], lambda t: torch.chunk(t, 2, -1))
    add("chunk_more_than_size", "chunk", {"n": 5, "dim": 0}, [r.randn(3, 2)], lambda t: torch.chunk(t, 5, 0))
    add("chunk_7_3_noncontig", "chunk", {"n": 3, "dim": 0}, [nc([7, 2], lambda s: r.randn(*s))],
        lambda t: torch.chunk(t, 3, 0))

    r = Rng("index_select")
    add("index_select_d0", "index_select", {"dim": 0}, [r.randn(5, 3), torch.tensor([4, 0, 2])],
        lambda t, i: torch.index_select(t, 0, i))
    add("index_select_d1_repeat", "index_select", {"dim": 1}, [r.randn(3, 4), torch.tensor([1, 1, 3, 0, 1])],
        lambda t, i: torch.index_select(t, 1, i))
    add("index_select_dm1_3d", "index_select", {"dim": -1}, [r.randn(2, 3, 4), torch.tensor([3, 2])],
        lambda t, i: torch.index_select(t, -1, i))
    add("index_select_noncontig", "index_select", {"dim": 0}, [nc([4, 3], lambda s: r.randn(*s)),
                                                                torch.tensor([3, 1])],
        lambda t, i: torch.index_select(t, 0, i))
    add("index_select_empty_idx", "index_select", {"dim": 0}, [r.randn(4, 3), torch.zeros(0, dtype=I64)],
        lambda t, i: torch.index_select(t, 0, i))
    add("index_select_i64", "index_select", {"dim": 0}, [r.randint(0, 100, 4, 2), torch.tensor([2, 2, 0])],
        lambda t, i: torch.index_select(t, 0, i))

    r = Rng("gather")
    add("gather_d0", "gather", {"dim": 0}, [r.randn(3, 4), r.randint(0, 3, 3, 4)], lambda t, i: torch.gather(t, 0, i))
    add("gather_d1", "gather", {"dim": 1}, [r.randn(3, 4), r.randint(0, 4, 3, 6)], lambda t, i: torch.gather(t, 1, i))
    add("gather_dm1_3d", "gather", {"dim": -1}, [r.randn(2, 3, 5), r.randint(0, 5, 2, 3, 2)],
        lambda t, i: torch.gather(t, -1, i))
    add("gather_smaller_index", "gather", {"dim": 1}, [r.randn(4, 5), r.randint(0, 5, 2, 3)],
        lambda t, i: torch.gather(t, 1, i))
    add("gather_noncontig", "gather", {"dim": 0}, [nc([3, 4], lambda s: r.randn(*s)),
                                                   nc([2, 4], lambda s: r.randint(0, 3, *s))],
        lambda t, i: torch.gather(t, 0, i))
    add("gather_i64", "gather", {"dim": 1}, [r.randint(-9, 9, 2, 4), r.randint(0, 4, 2, 4)],
        lambda t, i: torch.gather(t, 1, i))

    r = Rng("scatter_add")
    add("scatter_add_d0_repeat", "scatter_add", {"dim": 0},
        [r.randn(3, 5), torch.tensor([[0, 1, 2, 0, 0], [2, 0, 0, 1, 0]]), r.randn(2, 5)],
        lambda t, i, s: torch.scatter_add(t, 0, i, s))
    add("scatter_add_d1_repeat", "scatter_add", {"dim": 1},
        [r.randn(2, 4), torch.tensor([[0, 0, 0, 3, 3], [1, 2, 1, 2, 1]]), r.randn(2, 5)],
        lambda t, i, s: torch.scatter_add(t, 1, i, s))
    add("scatter_add_dm1_3d", "scatter_add", {"dim": -1},
        [r.randn(2, 2, 3), r.randint(0, 3, 2, 2, 4), r.randn(2, 2, 4)],
        lambda t, i, s: torch.scatter_add(t, -1, i, s))
    add("scatter_add_zeros_base", "scatter_add", {"dim": 0},
        [torch.zeros(4, 2), torch.tensor([[3, 3], [3, 0], [1, 3]]), r.randn(3, 2)],
        lambda t, i, s: torch.scatter_add(t, 0, i, s))
    add("scatter_add_noncontig", "scatter_add", {"dim": 1},
        [nc([3, 4], lambda s: r.randn(*s)), r.randint(0, 4, 3, 4), nc([3, 4], lambda s: r.randn(*s))],
        lambda t, i, s: torch.scatter_add(t, 1, i, s))
    add("scatter_add_i64", "scatter_add", {"dim": 0},
        [r.randint(-5, 5, 2, 3), torch.tensor([[1, 1, 0], [1, 0, 0]]), r.randint(-5, 5, 2, 3)],
        lambda t, i, s: torch.scatter_add(t, 0, i, s))

    add("one_hot_1d", "one_hot", {"num_classes": 4}, [torch.tensor([0, 3, 1, 1, 2])],
        lambda i: F.one_hot(i, 4))
    add("one_hot_2d", "one_hot", {"num_classes": 5}, [torch.tensor([[4, 0, 2], [1, 1, 3]])],
        lambda i: F.one_hot(i, 5))
    add("one_hot_extra_classes", "one_hot", {"num_classes": 7}, [torch.tensor([0, 2])], lambda i: F.one_hot(i, 7))
    add("one_hot_0d", "one_hot", {"num_classes": 3}, [torch.tensor(2)], lambda i: F.one_hot(i, 3))

    r = Rng("masked_fill")
    add("masked_fill_same", "masked_fill", {"value": -1.5}, [r.randn(3, 4), r.uniform(0, 1, 3, 4) < 0.5],
        lambda t, m: t.masked_fill(m, -1.5))
    add("masked_fill_bcast_col", "masked_fill", {"value": 0.0}, [r.randn(3, 4), r.uniform(0, 1, 3, 1) < 0.5],
        lambda t, m: t.masked_fill(m, 0.0))
    add("masked_fill_bcast_row_neg_inf", "masked_fill", {"value": -math.inf},
        [r.randn(2, 3, 4), r.uniform(0, 1, 4) < 0.5], lambda t, m: t.masked_fill(m, -math.inf))
    add("masked_fill_causal", "masked_fill", {"value": -1e9},
        [r.randn(2, 4, 4), torch.triu(torch.ones(4, 4, dtype=BOOL), diagonal=1)],
        lambda t, m: t.masked_fill(m, -1e9))
    add("masked_fill_noncontig", "masked_fill", {"value": 7.0},
        [nc([3, 4], lambda s: r.randn(*s)), nc([3, 4], lambda s: r.uniform(0, 1, *s) < 0.5)],
        lambda t, m: t.masked_fill(m, 7.0))
    add("masked_fill_i64", "masked_fill", {"value": -3.0}, [r.randint(0, 9, 2, 3), r.uniform(0, 1, 2, 3) < 0.5],
        lambda t, m: t.masked_fill(m, -3))
    add("masked_fill_f16", "masked_fill", {"value": 2.5},
        [r.randn(2, 3, dtype=F16), r.uniform(0, 1, 2, 3) < 0.5], lambda t, m: t.masked_fill(m, 2.5))

    r = Rng("pad")

    def pad(name, x, pads, value=0.0):
        add(name, "pad", {"pads": list(pads), "value": value}, [x],
            lambda t: F.pad(t, list(pads), mode="constant", value=value))

    pad("pad_last_1_2", r.randn(2, 3), [1, 2])
    pad("pad_2d_value", r.randn(2, 3, 4), [1, 1, 2, 0], value=1.5)
    pad("pad_3pairs", r.randn(2, 2, 3), [0, 1, 1, 0, 2, 1])
    pad("pad_negative_crop", r.randn(3, 5), [-1, 2])
    pad("pad_negative_both", r.randn(2, 4, 5), [-1, -2, 1, -1])
    pad("pad_zero", r.randn(2, 3), [0, 0, 0, 0])
    pad("pad_noncontig", nc([3, 4], lambda s: r.randn(*s)), [2, 1, 0, 1], value=-2.0)
    pad("pad_i64", r.randint(0, 9, 2, 3), [1, 1], value=5)
    pad("pad_nchw_2d", r.randn(1, 2, 3, 3), [1, 1, 1, 1])


# ----------------------------------------------------------------------------- casts

def gen_casts():
    inf, nan = math.inf, math.nan

    def cast(name, x, dt):
        add(name, "to_dtype", {"dtype": DTYPE_NAME[dt]}, [x], lambda t: t.to(dt))

    trunc = torch.tensor([-2.7, -2.5, -0.9, -0.5, -0.0, 0.0, 0.5, 0.9, 2.5, 2.7, 100.99, -100.99, 1e6 + 0.5])
    cast("cast_f32_to_i64_trunc", trunc, I64)
    cast("cast_f32_to_i32_trunc", trunc, I32)
    cast("cast_f64_to_i64_trunc", trunc.to(F64) * 3.3, I64)
    cast("cast_f32_to_u8", torch.tensor([0.0, 0.3, 0.99, 1.5, 127.5, 254.9, 255.0]), U8)
    cast("cast_f16_to_i64", torch.tensor([-3.75, -0.5, 0.0, 1.25, 7.9, 2047.0], dtype=F16), I64)
    cast("cast_f32_to_bool", torch.tensor([0.0, -0.0, 1e-30, -3.0, 0.5, inf, -inf, nan]), BOOL)
    cast("cast_i64_to_bool", torch.tensor([0, 1, -1, 5, 0]), BOOL)
    cast("cast_u8_to_bool", torch.tensor([0, 1, 255, 0], dtype=U8), BOOL)
    bools = torch.tensor([[True, False, True], [False, False, True]])
    for dt in (F32, F64, F16, BF16, I64, I32, U8):
        cast(f"cast_bool_to_{DTYPE_NAME[dt]}", bools, dt)
    ints = torch.tensor([-1000000, -257, -1, 0, 1, 2049, 4097, 16777217, 123456789])
    cast("cast_i64_to_f32", ints, F32)
    cast("cast_i64_to_f64", ints, F64)
    cast("cast_i64_to_f16", torch.tensor([-2049, -1, 0, 1, 2049, 2051, 4097, 65504, 70000]), F16)
    cast("cast_i64_to_bf16", torch.tensor([-257, -1, 0, 1, 255, 257, 259, 1000]), BF16)
    cast("cast_i64_to_i32", torch.tensor([-2147483648, -1, 0, 1, 2147483647]), I32)
    cast("cast_i32_to_i64", torch.tensor([-2147483648, -1, 0, 1, 2147483647], dtype=I32), I64)
    cast("cast_i64_to_u8", torch.tensor([0, 1, 127, 128, 255]), U8)
    cast("cast_u8_to_i64", torch.tensor([0, 1, 127, 128, 255], dtype=U8), I64)
    cast("cast_u8_to_f32", torch.tensor([0, 1, 127, 128, 255], dtype=U8), F32)
    cast("cast_i32_to_f32", torch.tensor([-16777217, -5, 0, 7, 16777217], dtype=I32), F32)
    # f16 / bf16 rounding (round-to-nearest-even, overflow to inf, subnormals)
    e10, e11 = 2.0 ** -10, 2.0 ** -11
    f16vals = [1.0 + e11, 1.0 + 3 * e11, 1.0 + e11 * 1.0001, -(1.0 + 3 * e11), 2048.0 + 1.0, 2048.0 + 3.0,
               65504.0, 65519.0, 65520.0, 70000.0, -70000.0, 1e-6, 6e-8, 2e-8, 3e-8, 1e-9, inf, -inf, nan, -0.0,
               0.1, 1.0 / 3.0, 3.14159265]
    cast("cast_f32_to_f16_rounding", torch.tensor(f16vals, dtype=F32), F16)
    e7, e8 = 2.0 ** -7, 2.0 ** -8
    bfvals = [1.0 + e8, 1.0 + 3 * e8, 1.0 + e8 * 1.001, -(1.0 + 3 * e8), 256.0 + 1.0, 256.0 + 3.0, 3.0e38, 3.4e38,
              1e-39, 1e-41, inf, -inf, nan, -0.0, 0.1, 1.0 / 3.0, 3.14159265]
    cast("cast_f32_to_bf16_rounding", torch.tensor(bfvals, dtype=F32), BF16)
    r = Rng("casts")
    cast("cast_f32_to_f16_random", r.randn(4, 5, scale=100.0), F16)
    cast("cast_f32_to_bf16_random", r.randn(4, 5, scale=100.0), BF16)
    cast("cast_f64_to_f32", r.randn(3, 4, dtype=F64, scale=1e3), F32)
    cast("cast_f64_to_f32_special", torch.tensor([1e39, -1e39, 1e-46, inf, nan, 1.0 + 2.0 ** -24], dtype=F64), F32)
    cast("cast_f64_to_f16", r.randn(3, 4, dtype=F64, scale=10.0), F16)
    cast("cast_f64_to_bf16", r.randn(3, 4, dtype=F64, scale=10.0), BF16)
    cast("cast_f16_to_f32", r.randn(3, 4, dtype=F16, scale=10.0), F32)
    cast("cast_f16_to_f64", torch.tensor([6e-8, -65504.0, inf, nan, 0.1], dtype=F16), F64)
    cast("cast_bf16_to_f32", r.randn(3, 4, dtype=BF16, scale=10.0), F32)
    cast("cast_f16_to_bf16", r.randn(3, 4, dtype=F16, scale=10.0), BF16)
    cast("cast_bf16_to_f16", r.randn(3, 4, dtype=BF16, scale=10.0), F16)
    cast("cast_f32_to_f64", r.randn(3, 4), F64)
    cast("cast_f32_to_f32_identity", r.randn(3, 4), F32)
    cast("cast_f32_noncontig_to_f16", nc([3, 4], lambda s: r.randn(*s)), F16)
    cast("cast_f32_to_i64_noncontig", nc([3, 4], lambda s: r.randn(*s, scale=5.0)), I64)


# ----------------------------------------------------------------------------- views / shape ops

def gen_views():
    r = Rng("views")

    def v(name, op, args, x, fn):
        add(name, op, args, [x], fn)

    v("reshape_contig", "reshape", {"shape": [4, 6]}, r.randn(2, 3, 4), lambda t: t.reshape(4, 6))
    v("reshape_noncontig", "reshape", {"shape": [12]}, nc([3, 4], lambda s: r.randn(*s)), lambda t: t.reshape(12))
    v("reshape_to_0d", "reshape", {"shape": []}, r.randn(1, 1), lambda t: t.reshape(()))
    v("reshape_from_0d", "reshape", {"shape": [1, 1, 1]}, r.randn(), lambda t: t.reshape(1, 1, 1))
    v("reshape_expanded", "reshape", {"shape": [2, 6]}, In(r.randn(1, 4), [{"expand": [3, 4]}]),
      lambda t: t.reshape(2, 6))
    v("reshape_zero_size", "reshape", {"shape": [4, 0]}, torch.zeros(0, 4), lambda t: t.reshape(4, 0))
    v("permute_3d", "permute", {"dims": [2, 0, 1]}, r.randn(2, 3, 4), lambda t: t.permute(2, 0, 1))
    v("permute_neg", "permute", {"dims": [-1, 0, 1]}, r.randn(2, 3, 4), lambda t: t.permute(-1, 0, 1))
    v("permute_of_view", "permute", {"dims": [1, 0]}, sliced([3, 4], 1, 2, lambda s: r.randn(*s)),
      lambda t: t.permute(1, 0))
    v("transpose_0_2", "transpose", {"dim0": 0, "dim1": 2}, r.randn(2, 3, 4), lambda t: t.transpose(0, 2))
    v("transpose_neg", "transpose", {"dim0": -1, "dim1": -2}, r.randn(2, 3, 4), lambda t: t.transpose(-1, -2))
    v("t_2d", "t", {}, r.randn(3, 5), lambda t: t.t())
    v("expand_new_dims", "expand", {"shape": [4, 2, 3]}, r.randn(2, 3), lambda t: t.expand(4, 2, 3))
    v("expand_size1", "expand", {"shape": [3, 4]}, r.randn(3, 1), lambda t: t.expand(3, 4))
    v("expand_0d", "expand", {"shape": [2, 2]}, r.randn(), lambda t: t.expand(2, 2))
    v("broadcast_to", "broadcast_to", {"shape": [2, 3, 4]}, r.randn(1, 4), lambda t: t.broadcast_to(2, 3, 4))
    v("narrow_d1", "narrow", {"dim": 1, "start": 1, "len": 2}, r.randn(3, 5), lambda t: t.narrow(1, 1, 2))
    v("narrow_dm1_zero_len", "narrow", {"dim": -1, "start": 2, "len": 0}, r.randn(3, 5),
      lambda t: t.narrow(-1, 2, 0))
    v("narrow_noncontig", "narrow", {"dim": 0, "start": 2, "len": 2}, nc([4, 3], lambda s: r.randn(*s)),
      lambda t: t.narrow(0, 2, 2))
    v("slice_step2", "slice", {"dim": 1, "start": 0, "end": 7, "step": 2}, r.randn(3, 7), lambda t: t[:, 0:7:2])
    v("slice_step3_offset", "slice", {"dim": 0, "start": 1, "end": 8, "step": 3}, r.randn(9, 2),
      lambda t: t[1:8:3])
    v("slice_step1", "slice", {"dim": 2, "start": 1, "end": 3, "step": 1}, r.randn(2, 2, 4), lambda t: t[:, :, 1:3])
    v("slice_of_slice", "slice", {"dim": 1, "start": 1, "end": 4, "step": 2},
      sliced([3, 5], 1, 2, lambda s: r.randn(*s)), lambda t: t[:, 1:4:2])
    v("slice_empty", "slice", {"dim": 0, "start": 2, "end": 2, "step": 1}, r.randn(4, 2), lambda t: t[2:2])
    v("squeeze_d1", "squeeze", {"dim": 1}, r.randn(3, 1, 4), lambda t: t.squeeze(1))
    v("squeeze_dm1", "squeeze", {"dim": -1}, r.randn(3, 1), lambda t: t.squeeze(-1))
    v("squeeze_not_one_noop", "squeeze", {"dim": 0}, r.randn(3, 2), lambda t: t.squeeze(0))
    v("unsqueeze_d0", "unsqueeze", {"dim": 0}, r.randn(3, 2), lambda t: t.unsqueeze(0))
    v("unsqueeze_dm1", "unsqueeze", {"dim": -1}, r.randn(3, 2), lambda t: t.unsqueeze(-1))
    v("unsqueeze_middle_noncontig", "unsqueeze", {"dim": 1}, nc([3, 2], lambda s: r.randn(*s)),
      lambda t: t.unsqueeze(1))
    v("unsqueeze_0d", "unsqueeze", {"dim": 0}, r.randn(), lambda t: t.unsqueeze(0))
    v("flatten_1_m1", "flatten", {"start_dim": 1, "end_dim": -1}, r.randn(2, 3, 4), lambda t: t.flatten(1, -1))
    v("flatten_0_1", "flatten", {"start_dim": 0, "end_dim": 1}, r.randn(2, 3, 4), lambda t: t.flatten(0, 1))
    v("flatten_all_noncontig", "flatten", {"start_dim": 0, "end_dim": -1}, nc([2, 3, 4], lambda s: r.randn(*s)),
      lambda t: t.flatten(0, -1))
    v("flatten_single_dim", "flatten", {"start_dim": 1, "end_dim": 1}, r.randn(2, 3), lambda t: t.flatten(1, 1))
    v("contiguous_permuted", "contiguous", {}, nc([3, 4, 2], lambda s: r.randn(*s)), lambda t: t.contiguous())
    v("contiguous_expanded", "contiguous", {}, In(r.randn(3, 1), [{"expand": [3, 4]}]), lambda t: t.contiguous())
    v("contiguous_sliced", "contiguous", {}, sliced([3, 4], 0, 2, lambda s: r.randn(*s)), lambda t: t.contiguous())
    v("contiguous_i64_permuted", "contiguous", {}, nc([2, 5], lambda s: r.randint(0, 100, *s)),
      lambda t: t.contiguous())
    v("contiguous_bool_permuted", "contiguous", {}, nc([2, 5], lambda s: r.uniform(0, 1, *s) < 0.5),
      lambda t: t.contiguous())
    v("contiguous_f16_permuted", "contiguous", {}, nc([2, 5], lambda s: r.randn(*s, dtype=F16)),
      lambda t: t.contiguous())
    v("contiguous_bf16_sliced", "contiguous", {}, sliced([3, 2], 0, 2, lambda s: r.randn(*s, dtype=BF16)),
      lambda t: t.contiguous())
    v("contiguous_u8_expand", "contiguous", {}, In(r.randint(0, 255, 1, 3, dtype=U8), [{"expand": [2, 3]}]),
      lambda t: t.contiguous())
    v("contiguous_i32_permuted", "contiguous", {}, nc([2, 3], lambda s: r.randint(-99, 99, *s, dtype=I32)),
      lambda t: t.contiguous())
    v("contiguous_f64_chain", "contiguous", {},
      In(r.randn(4, 1, 6, dtype=F64), [{"permute": [2, 1, 0]}, {"expand": [6, 3, 4]}, {"slice": [0, 1, 6, 2]},
                                        {"slice": [2, 0, 4, 3]}]),
      lambda t: t.contiguous())


# ----------------------------------------------------------------------------- creation

def gen_creation():
    def c(name, op, args, fn):
        add(name, op, args, [], fn)

    def ar(name, start, end, step, dt):
        c(name, "arange", {"start": start, "end": end, "step": step, "dtype": DTYPE_NAME[dt]},
          lambda: torch.arange(start, end, step, dtype=dt))

    ar("arange_i64", 0.0, 10.0, 1.0, I64)
    ar("arange_i64_step3", 2.0, 17.0, 3.0, I64)
    ar("arange_i64_negative_step", 5.0, -3.0, -2.0, I64)
    ar("arange_i32", -4.0, 4.0, 1.0, I32)
    ar("arange_f32_01", 0.0, 1.0, 0.1, F32)
    ar("arange_f32_nonint", 0.5, 3.7, 0.4, F32)
    ar("arange_f32_neg_step", 1.0, -1.0, -0.25, F32)
    ar("arange_f64_quarter", -1.0, 1.0, 0.25, F64)
    ar("arange_f32_empty", 3.0, 3.0, 1.0, F32)
    ar("arange_f16", 0.0, 4.0, 0.5, F16)

    def ls(name, start, end, steps, dt):
        c(name, "linspace", {"start": start, "end": end, "steps": steps, "dtype": DTYPE_NAME[dt]},
          lambda: torch.linspace(start, end, steps, dtype=dt))

    ls("linspace_f32_0_1_5", 0.0, 1.0, 5, F32)
    ls("linspace_f32_neg", -2.0, 3.0, 7, F32)
    ls("linspace_f64", 0.0, 1.0, 11, F64)
    ls("linspace_f32_desc", 1.0, -1.0, 6, F32)
    ls("linspace_f32_single", 3.0, 5.0, 1, F32)
    ls("linspace_f32_many", -10.0, 10.0, 101, F32)
    ls("linspace_i64", 0.0, 10.0, 5, I64)

    for n, dt in ((3, F32), (4, I64), (1, F64), (3, BOOL), (5, F16)):
        c(f"eye_{n}_{DTYPE_NAME[dt]}", "eye", {"n": n, "dtype": DTYPE_NAME[dt]}, lambda n=n, dt=dt: torch.eye(n, dtype=dt))

    def fl(name, shape, value, dt):
        c(name, "full", {"shape": shape, "value": float(value), "dtype": DTYPE_NAME[dt]},
          lambda: torch.full(shape, value, dtype=dt))

    fl("full_f32", [2, 3], 1.5, F32)
    fl("full_i64_0d", [], 7, I64)
    fl("full_f64_neg", [4], -2.25, F64)
    fl("full_zero_size", [0, 3], 1.0, F32)
    fl("full_f16", [2, 2], 0.1, F16)
    fl("full_bf16", [3], 3.14159, BF16)
    fl("full_bool", [2, 2], True, BOOL)
    fl("full_f32_neg_inf", [2], -math.inf, F32)
    fl("full_i32", [1, 2], -5, I32)
    fl("full_u8", [3], 200, U8)
    for op, fn in (("zeros", torch.zeros), ("ones", torch.ones)):
        for shape, dt in (([2, 3], F32), ([4], I64), ([], F64), ([2, 2], BOOL), ([3], BF16)):
            nm = f"{op}_{DTYPE_NAME[dt]}_{'x'.join(map(str, shape)) or '0d'}"
            c(nm, op, {"shape": shape, "dtype": DTYPE_NAME[dt]}, lambda shape=shape, dt=dt, fn=fn: fn(shape, dtype=dt))


# ----------------------------------------------------------------------------- edge cases

def gen_edge():
    inf, nan = math.inf, math.nan
    r = Rng("edge")
    # clamp with min > max: torch gives max everywhere
    add("clamp_min_gt_max", "clamp", {"min": 1.0, "max": 0.0}, [r.randn(2, 3)], lambda t: torch.clamp(t, 1.0, 0.0))
    # unary / binary on stride-0 (expanded) inputs
    add("exp_f32_expanded", "exp", {}, [In(r.randn(3, 1), [{"expand": [3, 4]}])], torch.exp)
    add("neg_i64_noncontig", "neg", {}, [nc([3, 4], lambda s: r.randint(-9, 9, *s))], torch.neg)
    add("add_both_expanded", "add", {}, [In(r.randn(1, 4), [{"expand": [3, 4]}]), In(r.randn(3, 1), [{"expand": [3, 4]}])],
        torch.add)
    add("mul_f16_noncontig_bcast", "mul", {}, [nc([2, 3, 4], lambda s: r.randn(*s, dtype=F16)), r.randn(4, dtype=F16)],
        torch.mul)
    # softmax / log_softmax over a dim of size 1
    add("softmax_dim_size1", "softmax", {"dim": 1}, [r.randn(3, 1)], lambda t: torch.softmax(t, 1))
    add("log_softmax_dim_size1", "log_softmax", {"dim": 0}, [r.randn(1, 4)], lambda t: torch.log_softmax(t, 0))
    # infinities inside reductions
    xi = torch.tensor([[1.0, inf, 3.0], [-inf, 5.0, 6.0], [-inf, -inf, -inf], [inf, inf, 0.0]])
    add("logsumexp_f32_pos_inf", "logsumexp", {"dims": [1], "keepdim": False}, [xi[[0, 3]]],
        lambda t: torch.logsumexp(t, [1]))
    add("max_f32_inf", "max", {"dims": [1], "keepdim": False}, [xi], lambda t: torch.amax(t, [1]))
    add("min_f32_inf", "min", {"dims": [1], "keepdim": False}, [xi], lambda t: torch.amin(t, [1]))
    add("sum_f32_inf", "sum", {"dims": [1], "keepdim": False}, [xi[:2]], lambda t: torch.sum(t, [1]))
    add("max_all_f32_nan", "max_all", {}, [torch.tensor([1.0, nan, 3.0])], torch.max)
    add("min_all_f32_nan", "min_all", {}, [torch.tensor([1.0, nan, -3.0])], torch.min)
    # argmax / argmin treat NaN as the extreme (first NaN wins)
    xn = torch.tensor([[1.0, nan, 3.0, nan], [4.0, 5.0, 6.0, 6.0], [-1.0, -1.0, nan, -5.0]])
    add("argmax_f32_nan", "argmax", {"dim": 1, "keepdim": False}, [xn], lambda t: torch.argmax(t, 1))
    add("argmin_f32_nan", "argmin", {"dim": 1, "keepdim": False}, [xn], lambda t: torch.argmin(t, 1))
    add("argmax_f32_inf_ties", "argmax", {"dim": 0, "keepdim": False},
        [torch.tensor([[-inf, inf, 1.0], [-inf, inf, 1.0]])], lambda t: torch.argmax(t, 0))
    # var / std: a single element with correction 1 (0/0 -> nan), constant rows
    add("var_single_c1", "var", {"dims": [1], "correction": 1, "keepdim": False}, [r.randn(3, 1)],
        lambda t: torch.var(t, [1], correction=1))
    add("var_single_c0", "var", {"dims": [1], "correction": 0, "keepdim": True}, [r.randn(3, 1)],
        lambda t: torch.var(t, [1], correction=0, keepdim=True))
    add("std_constant_rows", "std", {"dims": [1], "correction": 1, "keepdim": False},
        [torch.full((3, 7), 0.1) * torch.tensor([[1.0], [3.0], [-7.0]])],
        lambda t: torch.std(t, [1], correction=1), tol=(1e-5, 1e-6))
    add("var_over_dims_of_expanded", "var", {"dims": [0, 1], "correction": 1, "keepdim": False},
        [In(r.randn(1, 4, 3), [{"expand": [5, 4, 3]}])], lambda t: torch.var(t, [0, 1], correction=1), acc=True)
    # prod with zeros and negative values
    add("prod_zeros_negatives", "prod", {"dims": [1], "keepdim": False},
        [torch.tensor([[1.0, -2.0, 0.0, 3.0], [-1.0, -2.0, -3.0, 0.5], [-0.0, 2.0, 2.0, 2.0]])],
        lambda t: torch.prod(t, 1))
    # pooling: ceil_mode window that would start in the right padding is dropped
    for op, fn, extra in (("max_pool2d", lambda t: F.max_pool2d(t, 2, 2, 1, ceil_mode=True), {"dilation": [1, 1]}),
                          ("avg_pool2d", lambda t: F.avg_pool2d(t, 2, 2, 1, ceil_mode=True), {"count_include_pad": True}),
                          ("avg_pool2d", lambda t: F.avg_pool2d(t, 2, 2, 1, ceil_mode=True, count_include_pad=False),
                           {"count_include_pad": False})):
        tag = "" if op == "max_pool2d" else ("_incl" if extra["count_include_pad"] else "_excl")
        name = f"{op}_ceil_last_window_in_pad{tag}"
        args = {"kernel": [2, 2], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True}
        args.update(extra)
        add(name, op, args, [Rng(name).randn(1, 2, 5, 5)], fn, acc=True)
    add("adaptive_1x1_input_to_3x2", "adaptive_avg_pool2d", {"output": [3, 2]}, [r.randn(2, 3, 1, 1)],
        lambda t: F.adaptive_avg_pool2d(t, (3, 2)))
    add("maxpool_nan", "max_pool2d_with_indices",
        {"kernel": [2, 2], "stride": [2, 2], "padding": [0, 0], "dilation": [1, 1], "ceil_mode": False},
        [torch.tensor([[[[1.0, nan, 2.0, 3.0], [0.0, 5.0, 4.0, 4.0]]]])],
        lambda t: F.max_pool2d(t, 2, 2, return_indices=True))
    add("maxpool_all_neg_inf_pad", "max_pool2d_with_indices",
        {"kernel": [3, 3], "stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "ceil_mode": False},
        [torch.full((1, 1, 2, 2), -1e30)], lambda t: F.max_pool2d(t, 3, 1, 1, return_indices=True))
    # joins / index ops on views
    add("stack_expanded_and_sliced", "stack", {"dim": 1},
        [In(r.randn(1, 3), [{"expand": [4, 3]}]), sliced([4, 3], 0, 2, lambda s: r.randn(*s))],
        lambda a, b: torch.stack([a, b], 1))
    add("gather_expanded_index", "gather", {"dim": 1},
        [r.randn(3, 5), In(torch.tensor([[4, 0, 2]]), [{"expand": [3, 3]}])], lambda t, i: torch.gather(t, 1, i))
    add("index_select_sliced_index", "index_select", {"dim": 1},
        [r.randn(2, 6), In(torch.tensor([5, 9, 0, 9, 3, 9]), [{"slice": [0, 0, 6, 2]}])],
        lambda t, i: torch.index_select(t, 1, i))
    add("scatter_add_expanded_src", "scatter_add", {"dim": 0},
        [torch.zeros(3, 4), torch.tensor([[0, 1, 2, 0], [0, 0, 0, 0]]), In(r.randn(1, 4), [{"expand": [2, 4]}])],
        lambda t, i, s: torch.scatter_add(t, 0, i, s))
    add("pad_1d", "pad", {"pads": [2, 3], "value": -1.0}, [r.randn(4)], lambda t: F.pad(t, [2, 3], value=-1.0))
    add("pad_crop_to_empty", "pad", {"pads": [-2, -1], "value": 0.0}, [r.randn(2, 3)], lambda t: F.pad(t, [-2, -1]))
    add("pad_bf16", "pad", {"pads": [1, 0, 0, 1], "value": 0.5}, [r.randn(2, 2, dtype=BF16)],
        lambda t: F.pad(t, [1, 0, 0, 1], value=0.5))
    add("cast_expanded_f32_to_i32", "to_dtype", {"dtype": "i32"}, [In(r.randn(3, 1, scale=9.0), [{"expand": [3, 4]}])],
        lambda t: t.to(I32))
    add("reshape_sliced", "reshape", {"shape": [2, 3]}, [sliced([3, 2], 0, 2, lambda s: r.randn(*s))],
        lambda t: t.reshape(2, 3))
    add("one_hot_noncontig", "one_hot", {"num_classes": 4}, [nc([2, 3], lambda s: r.randint(0, 4, *s))],
        lambda i: F.one_hot(i, 4))
    # creation edge cases
    add("arange_f64_fp_len_edge", "arange", {"start": 1.0, "end": 1.3, "step": 0.1, "dtype": "f64"}, [],
        lambda: torch.arange(1.0, 1.3, 0.1, dtype=F64))
    add("arange_f32_fp_len_edge2", "arange", {"start": 0.0, "end": 0.3, "step": 0.1, "dtype": "f32"}, [],
        lambda: torch.arange(0.0, 0.3, 0.1, dtype=F32))
    add("linspace_two_steps", "linspace", {"start": -1.0, "end": 1.0, "steps": 2, "dtype": "f32"}, [],
        lambda: torch.linspace(-1.0, 1.0, 2, dtype=F32))
    add("eye_0_f32", "eye", {"n": 0, "dtype": "f32"}, [], lambda: torch.eye(0, dtype=F32))
    add("full_i32_large", "full", {"shape": [2], "value": 2147483647.0, "dtype": "i32"}, [],
        lambda: torch.full((2,), 2147483647, dtype=I32))


# ----------------------------------------------------------------------------- large (parallel / blocked paths)

def gen_large():
    """A few tensors above the sizes where kernels typically switch to threads or blocking."""
    def case(name, op, args, mk_inputs, fn, **kw):
        r = Rng(name)
        add(name, op, args, mk_inputs(r), fn, **kw)

    case("large_exp_noncontig", "exp", {}, lambda r: [nc([170, 200], lambda s: r.randn(*s))], torch.exp)
    case("large_gelu_f16", "gelu", {}, lambda r: [r.randn(200, 200, dtype=F16, scale=2.0)], lambda t: F.gelu(t))
    case("large_add_bcast", "add", {}, lambda r: [r.randn(4, 1, 1700), r.randn(5, 1700)], torch.add)
    case("large_mul_noncontig", "mul", {},
         lambda r: [nc([180, 190], lambda s: r.randn(*s)), sliced([180, 190], 1, 1, lambda s: r.randn(*s))], torch.mul)
    case("large_sum_long_rows", "sum", {"dims": [1], "keepdim": False}, lambda r: [r.randn(1, 36000, shift=0.3)],
         lambda t: torch.sum(t, [1]), tol=(1e-4, 1e-2))
    case("large_mean_middle_dim", "mean", {"dims": [1], "keepdim": True}, lambda r: [r.randn(8, 70, 64)],
         lambda t: torch.mean(t, [1], keepdim=True), acc=True)
    case("large_max_noncontig", "max", {"dims": [0], "keepdim": False},
         lambda r: [nc([300, 120], lambda s: r.randn(*s))], lambda t: torch.amax(t, [0]))
    case("large_argmax_ties_long_rows", "argmax", {"dim": 1, "keepdim": False},
         lambda r: [r.randint(0, 40, 1, 36000, dtype=F32)], lambda t: torch.argmax(t, 1))
    case("large_argmin_ties_cols", "argmin", {"dim": 0, "keepdim": False},
         lambda r: [r.randint(0, 5, 400, 90, dtype=F32)], lambda t: torch.argmin(t, 0))
    case("large_softmax", "softmax", {"dim": -1}, lambda r: [r.randn(34, 1000, scale=10.0)],
         lambda t: torch.softmax(t, -1), acc=True)
    case("large_var", "var", {"dims": [1], "correction": 1, "keepdim": False},
         lambda r: [r.randn(1, 36000, scale=3.0, shift=50.0)], lambda t: torch.var(t, [1], correction=1),
         tol=(1e-3, 1e-3))
    case("large_matmul_batched", "matmul", {}, lambda r: [r.randn(2, 65, 130), r.randn(130, 67)], torch.matmul,
         acc=True)
    case("large_matmul_T", "matmul", {},
         lambda r: [In(r.randn(96, 70), [{"permute": [1, 0]}]), In(r.randn(50, 96), [{"permute": [1, 0]}])],
         torch.matmul, acc=True)
    case("large_matmul_f16", "matmul", {}, lambda r: [r.randn(33, 64, dtype=F16), r.randn(64, 40, dtype=F16)],
         torch.matmul, tol=(2e-2, 5e-2))
    case("large_conv2d", "conv2d", {"stride": [1, 1], "padding": [1, 1], "dilation": [1, 1], "groups": 1},
         lambda r: [r.randn(2, 16, 16, 16), r.randn(32, 16, 3, 3, scale=1.0 / 12.0), r.randn(32)],
         lambda x, w, b: F.conv2d(x, w, b, padding=1), acc=True)
    case("large_conv_transpose2d", "conv_transpose2d",
         {"stride": [2, 2], "padding": [1, 1], "output_padding": [1, 1], "dilation": [1, 1], "groups": 1},
         lambda r: [r.randn(2, 16, 8, 8), r.randn(16, 8, 3, 3, scale=0.25), r.randn(8)],
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1), acc=True)
    case("large_maxpool", "max_pool2d_with_indices",
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "dilation": [1, 1], "ceil_mode": False},
         lambda r: [r.randn(2, 8, 48, 48)], lambda t: F.max_pool2d(t, 3, 2, 1, return_indices=True))
    case("large_avgpool", "avg_pool2d",
         {"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1], "ceil_mode": True, "count_include_pad": False},
         lambda r: [r.randn(2, 8, 48, 48)],
         lambda t: F.avg_pool2d(t, 3, 2, 1, ceil_mode=True, count_include_pad=False), acc=True)
    case("large_cast_f32_to_f16_noncontig", "to_dtype", {"dtype": "f16"},
         lambda r: [nc([170, 200], lambda s: r.randn(*s, scale=30.0))], lambda t: t.to(F16))
    case("large_where", "where_cond", {},
         lambda r: [r.uniform(0, 1, 170, 200) < 0.5, r.randn(170, 200), torch.tensor(0.0)], torch.where)
    case("large_scatter_add_collisions", "scatter_add", {"dim": 0},
         lambda r: [r.randn(10, 50), r.randint(0, 10, 200, 50), r.randn(200, 50)],
         lambda t, i, s: torch.scatter_add(t, 0, i, s), acc=True)
    case("large_index_select", "index_select", {"dim": 0},
         lambda r: [r.randn(300, 110), r.randint(0, 300, 300)], lambda t, i: torch.index_select(t, 0, i))
    case("large_cat_noncontig", "cat", {"dim": 1},
         lambda r: [nc([170, 90], lambda s: r.randn(*s)), r.randn(170, 110)], lambda a, b: torch.cat([a, b], 1))


# ----------------------------------------------------------------------------- main

def main():
    torch.manual_seed(0)
    gen_unary()
    gen_binary()
    gen_compare()
    gen_reductions()
    gen_matmul()
    gen_conv()
    gen_pool()
    gen_join_index()
    gen_casts()
    gen_views()
    gen_creation()
    gen_edge()
    gen_large()

    os.makedirs(OUT_DIR, exist_ok=True)
    st_path = os.path.join(OUT_DIR, "fixtures.safetensors")
    # a single metadata key: safetensors writes the metadata from a hash map (unordered)
    save_file(TENSORS, st_path, metadata={"generator": f"scripts/gen_golden.py, torch {torch.__version__}"})
    os.chmod(st_path, 0o644)
    with open(os.path.join(OUT_DIR, "cases.json"), "w") as f:
        json.dump(CASES, f, indent=1, sort_keys=False, allow_nan=False)
        f.write("\n")
    ops = sorted({c["op"] for c in CASES})
    size = os.path.getsize(st_path)
    print(f"{len(CASES)} cases, {len(TENSORS)} tensors, {len(ops)} ops, fixtures {size / 1e6:.2f} MB")
    print("ops:", " ".join(ops))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""PyTorch (CPU) counterparts of the criterion benches in benches/tensor_ops.rs and
benches/autograd.rs.

Usage:
  /root/venv-ref/bin/python benches/torch_ops.py --threads 2 [--repeats 11] [--block-ms 150]
                                                  [--only REGEX] [--inference-mode] > torch.tsv

Output: one line per workload, `name<TAB>median_seconds_per_iter`, with the same
names as the criterion benchmark ids (`<group>/<shape>`). Lines starting with `#`
are metadata (torch version, threads, per-workload spread and load) and are ignored
by benches/compare.py.

Timing method (as /work/shared/reference/pytorch_bench.py and, roughly, criterion):
warm up for --warmup-s seconds, calibrate an iteration count k so a timed block takes
~--block-ms ms, then time --repeats blocks of k iterations and report the median
per-iteration time over blocks. Before the timed blocks we wait (up to --max-wait
seconds, default $BENCH_MAX_WAIT or 30) for other processes to go quiet.

Autograd workloads (forward + backward, as benches/autograd.rs) always run with grad
mode on; --inference-mode applies only to the others.
"""
import argparse
import os
import re
import sys

ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2, as OAR_BENCH_THREADS)")
ap.add_argument("--repeats", type=int, default=11, help="timed blocks per workload (median over these)")
ap.add_argument("--block-ms", type=float, default=150.0, help="target duration of one timed block")
ap.add_argument("--warmup-s", type=float, default=0.5, help="warm-up seconds per workload")
ap.add_argument("--max-wait", type=float, default=float(os.environ.get("BENCH_MAX_WAIT", "30")),
                help="max seconds to wait for other processes to go quiet before each workload's timed blocks "
                     "(default: $BENCH_MAX_WAIT or 30; 0 disables)")
ap.add_argument("--only", type=str, default="", help="regex; run only workloads whose name matches")
ap.add_argument("--inference-mode", action="store_true",
                help="run the forward-only workloads under torch.inference_mode() (default: plain tensors, "
                     "requires_grad=False); autograd workloads always run with grad mode on")
args = ap.parse_args()

# Thread env vars must be set before torch (and its OpenMP/MKL runtimes) is imported.
for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[v] = str(args.threads)

import contextlib
import resource
import statistics
import time
import warnings

warnings.filterwarnings("ignore")

import torch
import torch.nn.functional as F

torch.set_num_threads(args.threads)
torch.manual_seed(0)

ONLY = re.compile(args.only) if args.only else None

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _snap():
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:9]))
    busy = sum(v) - v[3] - v[4]  # everything but idle+iowait (includes steal)
    r = resource.getrusage(resource.RUSAGE_SELF)
    return busy / CLK_TCK, r.ru_utime + r.ru_stime, time.perf_counter()


def other_load(s0, s1):
    """Average CPU cores used by *other* processes between two snapshots."""
    dt = s1[2] - s0[2]
    if dt <= 0:
        return 0.0
    return max(0.0, ((s1[0] - s0[0]) - (s1[1] - s0[1])) / dt)


def wait_quiet(threshold=0.15, window=0.5, max_wait=None):
    max_wait = args.max_wait if max_wait is None else max_wait
    if max_wait <= 0:
        return 0.0
    t_start = time.perf_counter()
    while True:
        s0 = _snap()
        time.sleep(window)
        if other_load(s0, _snap()) < threshold or time.perf_counter() - t_start > max_wait:
            return time.perf_counter() - t_start


def run_block(block, k):
    t0 = time.perf_counter()
    block(k)
    return time.perf_counter() - t0


def bench(block):
    """block(k) runs the workload k times. Returns (median_s, min_s, max_s, k, mean other load)."""
    t_end = time.perf_counter() + args.warmup_s
    n = 0
    while time.perf_counter() < t_end or n < 3:
        block(1)
        n += 1
    k = 1
    while True:
        dt = run_block(block, k)
        if dt * 1000 >= args.block_ms / 4 or k >= 1 << 24:
            break
        k *= 2
    # A block slowed down by other processes would shrink k; use the best of a few.
    dt = min([dt] + [run_block(block, k) for _ in range(2)])
    k = max(1, int(k * (args.block_ms / 1000) / max(dt, 1e-9)))
    wait_quiet()
    times, loads = [], []
    for _ in range(args.repeats):
        s0 = _snap()
        times.append(run_block(block, k) / k)
        loads.append(other_load(s0, _snap()))
    return statistics.median(times), min(times), max(times), k, statistics.mean(loads)


def loop(op):
    """Turn a zero-argument op into a block function."""
    def block(k):
        for _ in range(k):
            op()
    return block


# ----------------------------------------------------------------- workloads
# (name, make, grad): make() -> block(k). Names match the criterion ids in
# benches/tensor_ops.rs and benches/autograd.rs; grad=True marks autograd workloads.
WORKLOADS = []


def workload(name, grad=False):
    def deco(make):
        WORKLOADS.append((name, make, grad))
        return make
    return deco


for _n in (256, 512, 1024, 2048):
    @workload(f"matmul_f32/{_n}x{_n}x{_n}")
    def _mk(n=_n):
        a, b = torch.randn(n, n), torch.randn(n, n)
        return loop(lambda: torch.matmul(a, b))

for _name, _xs, _ws, _pad in (
    ("in1x3x32x32_w10x3x3x3_p0", (1, 3, 32, 32), (10, 3, 3, 3), 0),
    ("in64x3x32x32_w10x3x3x3_p0", (64, 3, 32, 32), (10, 3, 3, 3), 0),
    ("in64x1x28x28_w6x1x5x5_p2", (64, 1, 28, 28), (6, 1, 5, 5), 2),
    ("in64x6x14x14_w16x6x5x5_p0", (64, 6, 14, 14), (16, 6, 5, 5), 0),
    ("in32x64x16x16_w64x64x3x3_p1", (32, 64, 16, 16), (64, 64, 3, 3), 1),
):
    @workload(f"conv2d_f32/{_name}")
    def _mk(xs=_xs, ws=_ws, pad=_pad):
        x, w, b = torch.randn(*xs), torch.randn(*ws), torch.randn(ws[0])
        return loop(lambda: F.conv2d(x, w, b, stride=1, padding=pad))


@workload("add_f32/1024x1024")
def _mk():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    return loop(lambda: torch.add(a, b))


@workload("add_f32/1")
def _mk():
    # Per-op overhead: the add is inlined in the loop (no lambda call per iteration),
    # as in the reference script's fixed_bench.
    a, b = torch.randn(1), torch.randn(1)

    def block(k):
        for _ in range(k):
            a + b
    return block


@workload("sum_all_f32/1024x1024")
def _mk():
    a = torch.randn(1024, 1024)
    return loop(lambda: a.sum())


@workload("softmax_f32/64x1000_dim1")
def _mk():
    s = torch.randn(64, 1000)
    return loop(lambda: torch.softmax(s, dim=1))


# --------------------------------------------------------------- autograd
# Forward + backward per iteration, as benches/autograd.rs (see the tables there).
# Each iteration first clears the gradients (`p.grad = None`, as Oar's zero_grad).


def zero_grads(params):
    for p in params:
        p.grad = None


@workload("chain10_f32/16", grad=True)
def _mk():
    n = 16
    x = torch.randn(n).requires_grad_()
    w = torch.randn(n).requires_grad_()
    b, c = torch.randn(n), torch.randn(n)
    params = (x, w)

    def block(k):
        for _ in range(k):
            zero_grads(params)
            y = x * w                 # 1 mul
            h = y + b                 # 2 add
            h = torch.tanh(h)         # 3 tanh
            h = h * x                 # 4 mul
            h = torch.sigmoid(h)      # 5 sigmoid
            h = h - c                 # 6 sub
            h = torch.exp(h)          # 7 exp
            h = h * y                 # 8 mul
            h = h + x                 # 9 add
            h = torch.square(h)       # 10 square
            h.sum().backward()
    return block


@workload("simple_cnn_train_f32/64", grad=True)
def _mk():
    batch = 64
    x = torch.randn(batch, 3, 32, 32)
    targets = torch.arange(batch, dtype=torch.int64) % 10
    # Scaled normals, as the Rust bench (values do not affect timing).
    conv_w = (torch.randn(10, 3, 3, 3) * 0.1).requires_grad_()
    conv_b = (torch.randn(10) * 0.1).requires_grad_()
    fc_w = (torch.randn(10, 10 * 15 * 15) * 0.02).requires_grad_()
    fc_b = (torch.randn(10) * 0.02).requires_grad_()
    params = (conv_w, conv_b, fc_w, fc_b)

    def block(k):
        for _ in range(k):
            zero_grads(params)
            h = F.conv2d(x, conv_w, conv_b)
            h = torch.flatten(F.max_pool2d(F.relu(h), 2), 1)
            logits = h @ fc_w.t() + fc_b
            loss = -F.log_softmax(logits, 1).gather(1, targets.unsqueeze(1)).mean()
            loss.backward()
    return block


# --------------------------------------------------------------- train steps
# As benches/train.rs and shared/reference/pytorch_bench.py: zero_grad(set_to_none),
# forward, cross-entropy, backward, SGD(lr=0.01) step, on a fixed random batch.


class LeNet5(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = torch.nn.Conv2d(6, 16, 5)
        self.fc1 = torch.nn.Linear(400, 120)
        self.fc2 = torch.nn.Linear(120, 84)
        self.fc3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


class SimpleCNN(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 10, 3)
        self.fc = torch.nn.Linear(10 * 15 * 15, 10)

    def forward(self, x):
        return self.fc(torch.flatten(F.max_pool2d(F.relu(self.conv(x)), 2), 1))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(784, 512)
        self.fc2 = torch.nn.Linear(512, 512)
        self.fc3 = torch.nn.Linear(512, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


def train_step(model, shape):
    x = torch.randn(*shape)
    y = torch.arange(shape[0], dtype=torch.int64) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.01)

    def block(k):
        for _ in range(k):
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
    return block


@workload("train_step_f32/lenet5_bs64", grad=True)
def _mk():
    return train_step(LeNet5(), (64, 1, 28, 28))


@workload("train_step_f32/simple_cnn_bs64", grad=True)
def _mk():
    return train_step(SimpleCNN(), (64, 3, 32, 32))


@workload("train_step_f32/mlp_bs128", grad=True)
def _mk():
    return train_step(MLP(), (128, 784))


# ----------------------------------------------------------------- inference
# As benches/inference.rs: eager forward with gradients off (torch.no_grad).


def infer(model, shape):
    model.eval()
    x = torch.randn(*shape)

    def block(k):
        with torch.no_grad():
            for _ in range(k):
                model(x)
    return block


@workload("infer_f32/simple_cnn_bs1_eager")
def _mk():
    return infer(SimpleCNN(), (1, 3, 32, 32))


@workload("infer_f32/lenet5_bs64_eager")
def _mk():
    return infer(LeNet5(), (64, 1, 28, 28))


# The shapes issue 5 quotes (../shared/reference/pytorch_bench.py sections b and c).
@workload("infer_f32/simple_cnn_bs64_eager")
def _mk():
    return infer(SimpleCNN(), (64, 3, 32, 32))


@workload("infer_f32/lenet5_bs256_eager")
def _mk():
    return infer(LeNet5(), (256, 1, 28, 28))


# A served model's small batches.
@workload("infer_f32/mlp_bs1_eager")
def _mk():
    return infer(MLP(), (1, 784))


@workload("infer_f32/mlp_bs4_eager")
def _mk():
    return infer(MLP(), (4, 784))


@workload("infer_f32/mlp_bs64_eager")
def _mk():
    return infer(MLP(), (64, 784))


# PyTorch's own static graphs. `_jit_trace` is torch.jit.trace; `_static` is
# trace + freeze + optimize_for_inference (weights folded in, oneDNN layouts),
# the closest counterpart of Oar's optimized `to_static`.
def infer_jit(model, shape, frozen):
    model.eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        graph = torch.jit.trace(model, x)
        if frozen:
            graph = torch.jit.optimize_for_inference(torch.jit.freeze(graph.eval()))
        for _ in range(3):  # the profiling executor specializes on the first calls
            graph(x)

    def block(k):
        with torch.no_grad():
            for _ in range(k):
                graph(x)
    return block


for _name, _cls, _shape in (("simple_cnn_bs1", SimpleCNN, (1, 3, 32, 32)),
                            ("simple_cnn_bs64", SimpleCNN, (64, 3, 32, 32)),
                            ("lenet5_bs256", LeNet5, (256, 1, 28, 28)),
                            ("mlp_bs1", MLP, (1, 784)),
                            ("mlp_bs4", MLP, (4, 784)),
                            ("mlp_bs64", MLP, (64, 784))):
    for _suffix, _frozen in (("jit_trace", False), ("static", True)):
        @workload(f"infer_f32/{_name}_{_suffix}")
        def _mk(cls=_cls, shape=_shape, frozen=_frozen):
            return infer_jit(cls(), shape, frozen)


def main():
    print(f"# torch {torch.__version__} threads={torch.get_num_threads()} interop={torch.get_num_interop_threads()} "
          f"cpu_capability={torch.backends.cpu.get_cpu_capability()} mkldnn={torch.backends.mkldnn.is_available()} "
          f"inference_mode={args.inference_mode} repeats={args.repeats} block_ms={args.block_ms} "
          f"python={sys.version.split()[0]}", flush=True)
    print("# name\tmedian_s_per_iter   (comment lines: min/max over blocks, iters per block, "
          "mean CPU cores used by other processes)", flush=True)
    for name, make, grad in WORKLOADS:
        if ONLY and not ONLY.search(name):
            continue
        ctx = torch.inference_mode if args.inference_mode and not grad else contextlib.nullcontext
        with ctx():
            med, mn, mx, k, load = bench(make())
        print(f"# {name}: min={mn:.6g}s max={mx:.6g}s iters/block={k} load={load:.2f}", flush=True)
        print(f"{name}\t{med:.9g}", flush=True)


if __name__ == "__main__":
    main()

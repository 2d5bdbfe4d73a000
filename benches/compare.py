#!/usr/bin/env python3
"""Markdown table comparing Oar's criterion results with benches/torch_ops.py output.

Usage:
  python3 benches/compare.py TORCH_TSV [--criterion-dir target/criterion] [--only REGEX]

TORCH_TSV is the output of benches/torch_ops.py (`name<TAB>median_seconds_per_iter`,
`#` lines ignored). Oar figures are the median point estimates (ns) from
criterion's `<criterion-dir>/**/new/estimates.json`; the benchmark id comes from
the sibling `benchmark.json` (falling back to the directory path).

Columns: workload | Oar | PyTorch | ratio, where ratio = PyTorch time / Oar time
(> 1 means Oar is faster). matmul rows also show GFLOP/s (2 n^3 / time).
Standard library only.
"""
import argparse
import json
import os
import re
import sys


def fmt_time(seconds):
    if seconds is None:
        return "n/a"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}" if seconds / scale < 100 else f"{seconds / scale:.0f} {unit}"
    return f"{seconds * 1e9:.3g} ns" if seconds * 1e9 < 100 else f"{seconds * 1e9:.0f} ns"


MATMUL = re.compile(r"^matmul_f32/(\d+)x(\d+)x(\d+)$")


def flops(name):
    m = MATMUL.match(name)
    if not m:
        return None
    n, k, p = map(int, m.groups())
    return 2.0 * n * k * p


def cell(name, seconds):
    s = fmt_time(seconds)
    f = flops(name)
    if f and seconds:
        s += f" ({f / seconds / 1e9:.1f} GFLOP/s)"
    return s


def read_criterion(root):
    """{benchmark id: median seconds} from criterion's output directory."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        try:
            with open(os.path.join(dirpath, "estimates.json")) as f:
                est = json.load(f)
            median_ns = est["median"]["point_estimate"]
        except (OSError, ValueError, KeyError) as e:
            print(f"warning: skipping {dirpath}: {e}", file=sys.stderr)
            continue
        name = None
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                name = json.load(f).get("full_id")
        except (OSError, ValueError):
            pass
        if not name:
            name = os.path.relpath(os.path.dirname(dirpath), root).replace(os.sep, "/")
        out[name] = median_ns * 1e-9
    return out


def read_torch(path):
    """[(name, seconds)] in file order."""
    rows = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = line.split("\t")
            try:
                rows.append((parts[0].strip(), float(parts[1])))
            except (IndexError, ValueError):
                print(f"warning: {path}:{lineno}: cannot parse {line!r}", file=sys.stderr)
    return rows


ORDER = ["matmul_f32", "conv2d_f32", "add_f32", "sum_all_f32", "softmax_f32", "chain10_f32", "simple_cnn_train_f32"]


def sort_key(name):
    group = name.split("/", 1)[0]
    gi = ORDER.index(group) if group in ORDER else len(ORDER)
    # natural sort of the rest so 256 < 512 < 1024 < 2048
    rest = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]
    return (gi, group, [(0, t) if isinstance(t, int) else (1, t) for t in rest])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("torch_tsv", help="output file of benches/torch_ops.py")
    ap.add_argument("--criterion-dir", default=None,
                    help="criterion output dir (default: $CARGO_TARGET_DIR/criterion or target/criterion "
                         "next to this script's workspace)")
    ap.add_argument("--only", default="", help="regex; show only workloads whose name matches")
    args = ap.parse_args()

    crit_dir = args.criterion_dir
    if crit_dir is None:
        target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                     os.pardir, "target")
        crit_dir = os.path.join(target, "criterion")
    if not os.path.isdir(crit_dir):
        sys.exit(f"error: criterion directory {crit_dir} not found (run `cargo bench --bench tensor_ops` / `--bench autograd` first)")

    oar = read_criterion(crit_dir)
    torch = dict(read_torch(args.torch_tsv))
    only = re.compile(args.only) if args.only else None
    # PyTorch file order (= suite definition order) first, then Oar-only results.
    names = list(torch) + sorted((n for n in oar if n not in torch), key=sort_key)
    names = [n for n in names if not only or only.search(n)]
    if not names:
        sys.exit("error: no benchmark results found")

    print("| workload | Oar | PyTorch | ratio (PyTorch/Oar) |")
    print("|---|---:|---:|---:|")
    for n in names:
        o, t = oar.get(n), torch.get(n)
        ratio = f"{t / o:.2f}x" if o and t else "n/a"
        print(f"| `{n}` | {cell(n, o)} | {cell(n, t)} | {ratio} |")
    print()
    print("Times are medians per iteration; ratio > 1 means Oar is faster.")


if __name__ == "__main__":
    main()

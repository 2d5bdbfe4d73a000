#!/usr/bin/env bash
# Builds the C API (liboar_capi.so) and the C++ example examples/cpp/classify.cpp,
# then classifies the 2,000 MNIST images the mnist example holds out.
#
#   scripts/build_cpp_example.sh                      # trains a model first (1 epoch, ~1 s)
#   scripts/build_cpp_example.sh runs/mnist/model     # a model the mnist example saved
#   scripts/build_cpp_example.sh runs/mnist/model --skip 0 --threads 1   # classify options
#
# Without MODEL_DIR it runs `cargo run --release --example mnist -- --epochs 1`
# into $TARGET/cpp/mnist and checks that the C++ program's accuracy equals the
# one the Rust Predictor reported for the same images (and is >= 90%).
# OAR_CPP_PROFILE=dev builds and runs everything in the dev profile instead,
# which after `cargo test --workspace` is already built (CI uses that); the
# library and the model must come from the same build of the code.
# Needs g++; uses zlib for the .gz files when its header and library are there
# and otherwise decompresses them with gzip.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-target}"
TARGET="$(mkdir -p "$TARGET" && cd "$TARGET" && pwd)"
OUT="$TARGET/cpp"
mkdir -p "$OUT"

command -v g++ >/dev/null || { echo "error: g++ not found (apt-get install -y g++)" >&2; exit 1; }

case "${OAR_CPP_PROFILE:-release}" in
release) CARGO_PROFILE=(--release) LIBDIR="$TARGET/release" ;;
dev) CARGO_PROFILE=() LIBDIR="$TARGET/debug" ;;
*) echo "error: OAR_CPP_PROFILE must be release or dev" >&2; exit 2 ;;
esac

# 1. The shared library. All workspace libraries in one build (not -p), so the
# artifacts are shared with `cargo run --example` and `cargo test --workspace`.
cargo build "${CARGO_PROFILE[@]}" --workspace --lib
[[ -f "$LIBDIR/liboar_capi.so" ]] || { echo "error: $LIBDIR/liboar_capi.so was not built" >&2; exit 1; }

# 2. The C++ program, with zlib if it compiles and links.
ZLIB=()
if printf '#include <zlib.h>\nint main() { return gzopen("", "rb") != 0; }\n' |
    g++ -x c++ - -o "$OUT/zlib_probe" -lz >/dev/null 2>&1; then
    ZLIB=(-DOAR_WITH_ZLIB -lz)
fi
rm -f "$OUT/zlib_probe"
set -x
g++ -O2 -std=c++17 -Wall -Wextra -Werror -I capi/include examples/cpp/classify.cpp -o "$OUT/classify" \
    -L "$LIBDIR" -loar_capi -Wl,-rpath,"$LIBDIR" "${ZLIB[@]}"
{ set +x; } 2>/dev/null
# The header is C as well as C++.
if command -v gcc >/dev/null; then
    gcc -std=c99 -Wall -Wextra -pedantic -Werror -fsyntax-only -x c capi/include/oar.h
fi

# 3. The data: the bundled .gz files directly with zlib, else decompressed copies.
IMAGES=data/mnist/t10k-images-idx3-ubyte.gz
if [[ ${#ZLIB[@]} -eq 0 ]]; then
    for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
        [[ -f "$OUT/$f" ]] || gzip -dc "data/mnist/$f.gz" >"$OUT/$f"
    done
    IMAGES="$OUT/t10k-images-idx3-ubyte"
fi

# 4. A model, and the run.
if [[ $# -gt 0 ]]; then
    MODEL="$1"
    shift
    set -x
    "$OUT/classify" "$MODEL" "$IMAGES" --skip 8000 "$@"
    exit
fi

cargo run "${CARGO_PROFILE[@]}" --example mnist -- --epochs 1 --out "$OUT/mnist" | tee "$OUT/mnist.log"
set -x
"$OUT/classify" "$OUT/mnist/model" "$IMAGES" --skip 8000 --min-accuracy 90 | tee "$OUT/classify.log"
{ set +x; } 2>/dev/null
rust_acc="$(sed -n 's/^Predictor accuracy: \([0-9.]*\)%.*/\1/p' "$OUT/mnist.log")"
cpp_acc="$(sed -n 's/^accuracy: \([0-9.]*\)%.*/\1/p' "$OUT/classify.log")"
if [[ -z "$rust_acc" ]]; then
    echo "warning: the mnist example printed no 'Predictor accuracy: X%' line; only the 90% floor was checked" >&2
elif [[ "$rust_acc" != "$cpp_acc" ]]; then
    echo "error: the C++ program's accuracy ($cpp_acc%) differs from the Rust Predictor's ($rust_acc%)" >&2
    exit 1
else
    echo "C++ accuracy $cpp_acc% equals the Rust Predictor's"
fi

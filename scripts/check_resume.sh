#!/usr/bin/env bash
# Checks the mnist example's --resume end to end: 2 epochs straight, and 1 epoch
# then a resumed 2nd, must write byte-identical final weights.
#
#   scripts/check_resume.sh            # release build
#   OAR_CPP_PROFILE=dev scripts/check_resume.sh   # dev profile (CI, after cargo test)
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET="${CARGO_TARGET_DIR:-target}"
OUT="$TARGET/resume-check"
rm -rf "$OUT"
mkdir -p "$OUT"
case "${OAR_CPP_PROFILE:-release}" in
release) PROFILE=(--release) ;;
dev) PROFILE=() ;;
*) echo "error: OAR_CPP_PROFILE must be release or dev" >&2; exit 2 ;;
esac
run() { cargo run -q "${PROFILE[@]}" --example mnist -- --seed 5 "$@"; }

run --epochs 2 --out "$OUT/straight" >"$OUT/straight.log"
run --epochs 1 --out "$OUT/resumed" >"$OUT/first.log"
run --epochs 2 --out "$OUT/resumed" --resume >"$OUT/resumed.log"
grep -q '^resumed from .* after epoch 1$' "$OUT/resumed.log" ||
    { echo "error: the resumed run did not report resuming after epoch 1" >&2; cat "$OUT/resumed.log" >&2; exit 1; }
if cmp -s "$OUT/straight/model.safetensors" "$OUT/resumed/model.safetensors"; then
    echo "resume: 1 + 1 epochs wrote the same weights as 2 straight ($(grep '^test accuracy' "$OUT/resumed.log"))"
else
    echo "error: resuming changed the trained weights" >&2
    exit 1
fi

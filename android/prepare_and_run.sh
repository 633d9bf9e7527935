#!/usr/bin/env bash
# Train LeNet on MNIST with et_train: on an Android phone over adb (-t arm64), on this machine
# (-t x86), or on this machine under qemu as a stand-in for the phone (-t arm64-qemu).
# edgetrain's counterpart of MindSpore Lite's train_lenet/prepare_and_run.sh.
#
#   android/prepare_and_run.sh -D /PATH/MNIST_Data -t arm64|x86|arm64-qemu
#       [-m model.etm] [-i iterations | -e epochs] [-b batch] [-T threads] [-w workdir]
#       [--test-limit N] [--dry-run]
#
# Steps: export LeNet from Python (unless -m is given; edgetrain is built first with `make build`
# when no Python at hand can load it), gunzip MNIST into
# WORKDIR/MNIST_Data/{train,test}, build et_train for the target, run it, and say where the
# trained model is. --dry-run (arm64) prints the adb commands instead of running them.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
PYTHON="${PYTHON:-python3}"
DEVICE_DIR=/data/local/tmp/edgetrain

usage() {
    cat <<EOF
usage: $(basename "$0") -D MNIST_DIR -t arm64|x86|arm64-qemu [options]
  -D DIR       MNIST files (.gz or raw; flat or in train/ and test/ subfolders)
  -t TARGET    arm64: a phone over adb; x86: this machine; arm64-qemu: static arm64 build
               under qemu-aarch64-static on this machine
  -m MODEL     model to train (.etm); default: export edgetrain.models.LeNet from Python
  -i N         training steps (default: one epoch)
  -e N         epochs instead of steps
  -b N         batch size (default: the model's, 32 for the exported LeNet)
  -T N         threads (default 1)
  -w DIR       work folder (default android/build/run)
  --test-limit N  evaluate on the first N test images only (default all 10,000)
  --dry-run    with -t arm64: print the adb commands instead of running them
  -h           this text
EOF
}

die() { echo "prepare_and_run.sh: error: $*" >&2; exit 1; }
need() {  # need TOOL PACKAGE
    command -v "$1" >/dev/null 2>&1 || die "$1 not found; install it (Debian/Ubuntu: sudo apt-get install $2)"
}

MNIST_DIR="" TARGET="" MODEL="" ITERS="" EPOCHS="" BATCH="" THREADS=1 DRY_RUN=0 TEST_LIMIT=""
WORK="$HERE/build/run"
while [[ $# -gt 0 ]]; do
    case "$1" in
        -D) MNIST_DIR="${2:?-D needs a folder}"; shift 2 ;;
        -t) TARGET="${2:?-t needs a target}"; shift 2 ;;
        -m) MODEL="${2:?-m needs a file}"; shift 2 ;;
        -i) ITERS="${2:?-i needs a number}"; shift 2 ;;
        -e) EPOCHS="${2:?-e needs a number}"; shift 2 ;;
        -b) BATCH="${2:?-b needs a number}"; shift 2 ;;
        -T) THREADS="${2:?-T needs a number}"; shift 2 ;;
        -w) WORK="${2:?-w needs a folder}"; shift 2 ;;
        --test-limit) TEST_LIMIT="${2:?--test-limit needs a number}"; shift 2 ;;
        --dry-run) DRY_RUN=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument '$1'" ;;
    esac
done
[[ -n "$MNIST_DIR" ]] || { usage >&2; die "no MNIST folder (-D)"; }
[[ -d "$MNIST_DIR" ]] || die "$MNIST_DIR: MNIST folder not found"
case "$TARGET" in
    arm64|x86|arm64-qemu) ;;
    "") usage >&2; die "no target (-t arm64|x86|arm64-qemu)" ;;
    *) usage >&2; die "unknown target '$TARGET' (arm64, x86 or arm64-qemu)" ;;
esac
[[ -z "$ITERS" || -z "$EPOCHS" ]] || die "give -i or -e, not both"
for v in "$ITERS" "$EPOCHS" "$BATCH" "$THREADS" "$TEST_LIMIT"; do
    [[ -z "$v" || "$v" =~ ^[0-9]+$ ]] || die "'$v' is not a number"
done
if [[ $DRY_RUN == 1 && $TARGET != arm64 ]]; then
    die "--dry-run only applies to -t arm64 (it prints the adb commands)"
fi

# ---- tools ----------------------------------------------------------------------------------
case "$TARGET" in
    arm64)
        need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
        [[ $DRY_RUN == 1 ]] || need adb adb ;;
    arm64-qemu)
        need aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu
        need qemu-aarch64-static qemu-user-static ;;
    x86)
        need cc gcc ;;
esac
need make make
need gunzip gzip
mkdir -p "$WORK"
WORK="$(cd "$WORK" && pwd)"

# ---- the model ------------------------------------------------------------------------------
can_import() {  # can_import PYTHON: does it load edgetrain with its native runtime?
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$1" -c "import edgetrain._native" >/dev/null 2>&1
}
edgetrain_python() {  # $PYTHON if it has edgetrain, else the repository's .venv (built if needed)
    if command -v "$PYTHON" >/dev/null 2>&1 && can_import "$PYTHON"; then return; fi
    local venv="$ROOT/.venv/bin/python"
    if [[ -x "$venv" ]] && can_import "$venv"; then PYTHON="$venv"; return; fi
    echo "== edgetrain is not built: make -C $ROOT build"
    command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
    make -s -C "$ROOT" build PYTHON="$PYTHON" >&2 || die "building edgetrain failed (make build)"
    PYTHON="$venv"
    can_import "$PYTHON" || die "edgetrain still does not load after make build"
}

if [[ -z "$MODEL" ]]; then
    MODEL="$WORK/lenet.etm"
    edgetrain_python
    echo "== exporting LeNet to $MODEL"
    PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - "$MODEL" <<'EOF' \
        || die "exporting LeNet failed"
import sys
import edgetrain as et
from edgetrain import nn, optim
from edgetrain.models import LeNet

model = LeNet()
sess = et.TrainSession.from_module(
    model, inputs={"data": (32, 1, 28, 28)}, loss=nn.CrossEntropyLoss(),
    labels={"label": ((32,), "int64")},
    optimizer=optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4), threads=1)
sess.SaveToFile(sys.argv[1])
print("exported", sys.argv[1])
EOF
fi
[[ -f "$MODEL" ]] || die "$MODEL: model file not found"
MODEL="$(cd "$(dirname "$MODEL")" && pwd)/$(basename "$MODEL")"

# ---- the data: raw IDX in MindSpore's layout --------------------------------------------------
DATA="$WORK/MNIST_Data"
echo "== MNIST from $MNIST_DIR into $DATA"
mkdir -p "$DATA/train" "$DATA/test"
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    sub=train; [[ $name == t10k-* ]] && sub=test
    dst="$DATA/$sub/$name"
    src=""
    for cand in "$MNIST_DIR/$name" "$MNIST_DIR/$sub/$name" "$MNIST_DIR/$name.gz" "$MNIST_DIR/$sub/$name.gz"; do
        if [[ -f "$cand" ]]; then src="$cand"; break; fi
    done
    [[ -n "$src" ]] || die "$MNIST_DIR/$name[.gz]: MNIST file not found (also looked in $MNIST_DIR/$sub/)"
    if [[ -f "$dst" && "$dst" -nt "$src" ]]; then continue; fi
    if [[ $src == *.gz ]]; then
        gunzip -c "$src" > "$dst.tmp" || die "$src: cannot gunzip"
    else
        cp "$src" "$dst.tmp"
    fi
    mv "$dst.tmp" "$dst"
done

# ---- build ----------------------------------------------------------------------------------
case "$TARGET" in
    x86) MAKE_TARGET=host ;;
    *) MAKE_TARGET=aarch64 ;;
esac
echo "== building et_train ($MAKE_TARGET)"
make -s -C "$HERE" TARGET="$MAKE_TARGET" all >&2 || die "building et_train failed"
BIN="$(make -s -C "$HERE" TARGET="$MAKE_TARGET" --no-print-directory print-binary)"
[[ -x "$BIN" ]] || die "$BIN: not built"
if [[ $MAKE_TARGET == aarch64 ]]; then
    echo "   $BIN: $(wc -c < "$BIN") bytes (static, stripped)"
fi

# ---- run ------------------------------------------------------------------------------------
BASE="$(basename "${MODEL%.etm}")"
TRAINED="$WORK/${BASE}_trained.etm"
ARGS=(-t "$THREADS" -p 100)
[[ -n "$ITERS" ]] && ARGS+=(-i "$ITERS")
[[ -n "$EPOCHS" ]] && ARGS+=(-e "$EPOCHS")
[[ -n "$BATCH" ]] && ARGS+=(-b "$BATCH")
[[ -n "$TEST_LIMIT" ]] && ARGS+=(--test-limit "$TEST_LIMIT")

case "$TARGET" in
    x86)
        echo "== training on this machine"
        "$BIN" -f "$MODEL" -d "$DATA" -s "$TRAINED" "${ARGS[@]}" ;;
    arm64-qemu)
        echo "== training under qemu-aarch64-static (arm64 stand-in)"
        qemu-aarch64-static "$BIN" -f "$MODEL" -d "$DATA" -s "$TRAINED" "${ARGS[@]}" ;;
    arm64)
        DEV_ARGS="-f $BASE.etm -d MNIST_Data -s ${BASE}_trained.etm ${ARGS[*]}"
        DEV_CMD="cd $DEVICE_DIR && chmod 755 et_train && ./et_train $DEV_ARGS"
        PUSHES=("$BIN" "$DEVICE_DIR/et_train" "$MODEL" "$DEVICE_DIR/$BASE.etm")
        for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
            sub=train; [[ $name == t10k-* ]] && sub=test
            PUSHES+=("$DATA/$sub/$name" "$DEVICE_DIR/MNIST_Data/$sub/$name")
        done
        if [[ $DRY_RUN == 1 ]]; then
            echo "== dry run: the commands for the device"
            echo "adb shell mkdir -p $DEVICE_DIR/MNIST_Data/train $DEVICE_DIR/MNIST_Data/test"
            for ((k = 0; k < ${#PUSHES[@]}; k += 2)); do echo "adb push ${PUSHES[k]} ${PUSHES[k+1]}"; done
            echo "adb shell \"$DEV_CMD\""
            echo "adb pull $DEVICE_DIR/${BASE}_trained.etm $TRAINED"
            echo "trained model would be at: $TRAINED"
            exit 0
        fi
        adb get-state >/dev/null 2>&1 || die "no device: connect a phone with USB debugging on (see: adb devices)"
        echo "== training on the device ($(adb get-serialno 2>/dev/null || echo '?'))"
        adb shell mkdir -p "$DEVICE_DIR/MNIST_Data/train" "$DEVICE_DIR/MNIST_Data/test"
        for ((k = 0; k < ${#PUSHES[@]}; k += 2)); do adb push "${PUSHES[k]}" "${PUSHES[k+1]}"; done
        # Old adb versions do not return the remote exit code: print it and check it.
        out="$(adb shell "$DEV_CMD; echo et_train_exit=\$?")"
        echo "$out"
        code="$(printf '%s\n' "$out" | tr -d '\r' | sed -n 's/^et_train_exit=\([0-9]*\).*/\1/p' | tail -1)"
        [[ "$code" == 0 ]] || die "et_train failed on the device (exit ${code:-unknown})"
        adb pull "$DEVICE_DIR/${BASE}_trained.etm" "$TRAINED" ;;
esac
echo "trained model: $TRAINED"

#!/usr/bin/env bash
# Build what scripts/gpu_check.py needs on the lent GPU machine (Python 3.12, PyTorch, CUDA,
# NVML; no TensorFlow, no Dask, no internet) into device_wheels/ (ignored by git through its
# own .gitignore, so it travels only when `carry` names it):
#   - parallax_nb as a wheel (pip wheel --no-deps: its TensorFlow requirement stays behind);
#   - dask, distributed, dask-cuda and the pure-Python packages the image lacks, for
#     CPython 3.12 on x86-64 (dask-cuda pins dask 2026.7.x: keep these versions together);
#   - Horovod's runner (pure Python: the rank assignment and rendezvous), copied from this
#     environment's Horovod without its compiled libraries, as horovod_runner/horovod.
# About 4 MB. Usage: scripts/build_device_wheels.sh [DIR]   (docs/gpus.md says how to run it)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-device_wheels}
PY=${PYTHON:-.venv/bin/python}
PACKAGES=(dask==2026.7.1 distributed==2026.7.1 dask-cuda==26.10.0 rapids-dask-dependency==26.10.0
          partd==1.4.2 locket==1.0.0 zict==3.0.0 tblib==3.2.2 tornado==6.6.1 toolz==1.2.0
          sortedcontainers==2.4.0 click==8.5.1)

rm -rf "$OUT"
mkdir -p "$OUT"
printf '*\n' > "$OUT/.gitignore"
"$PY" -m pip wheel -q --no-deps --no-build-isolation -w "$OUT" . 2>&1 | grep -v "is ignored" || true
ls "$OUT"/parallax_nb-*.whl > /dev/null
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$OUT" "${PACKAGES[@]}" 2>&1 | grep -v "is ignored" || true
for package in "${PACKAGES[@]}"; do
  name=${package%%==*}
  ls "$OUT"/${name//-/_}-*.whl > /dev/null || { echo "missing wheel: $package" >&2; exit 1; }
done

HOROVOD=$("$PY" -c "import horovod, os; print(os.path.dirname(horovod.__file__))")
mkdir -p "$OUT/horovod_runner/horovod"
cp "$HOROVOD/__init__.py" "$OUT/horovod_runner/horovod/"
(cd "$HOROVOD" && find runner -name '*.py' -not -path '*/__pycache__/*') | while read -r file; do
  mkdir -p "$OUT/horovod_runner/horovod/$(dirname "$file")"
  cp "$HOROVOD/$file" "$OUT/horovod_runner/horovod/$file"
done
du -sh "$OUT"
ls "$OUT"

#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with the verified stack:
# TensorFlow 2.18.1 (CPU), tf_keras 2.18, Horovod 0.28.1 built from source with Gloo,
# Dask/distributed, the notebook stack and the test tools. Idempotent: a finished
# environment is marked by .venv/.parallax-ready and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PARALLAX_VENV:-.venv}
PY=${PYTHON:-python3}
STAMP="$VENV/.parallax-ready"
REQ_HASH=$(cat setup.py scripts/setup_env.sh | sha256sum | cut -c1-16)

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$REQ_HASH" ]]; then
  exit 0
fi

echo "[setup] creating $VENV (TensorFlow, Horovod build: about 5-10 minutes on 2 cores)" >&2
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip wheel "setuptools<81"
# TensorFlow first: Horovod compiles against the installed TensorFlow.
"$VENV/bin/python" -m pip install -q "tensorflow-cpu==2.18.1" "tf_keras==2.18.0" "cmake<4"
if ! "$VENV/bin/python" -c "import horovod.tensorflow" 2>/dev/null; then
  echo "[setup] building horovod 0.28.1 with Gloo" >&2
  PATH="$PWD/$VENV/bin:$PATH" \
  HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 \
  HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
    "$VENV/bin/python" -m pip install -q --no-build-isolation --no-cache-dir "horovod==0.28.1"
fi
# The package itself, editable, with the test extras.
"$VENV/bin/python" -m pip install -q -e ".[test]"
echo "$REQ_HASH" > "$STAMP"
echo "[setup] environment ready in $VENV" >&2

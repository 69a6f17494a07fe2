#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv with the verified stack:
# TensorFlow 2.18.1 (CPU), tf_keras 2.18, Horovod 0.28.1 built from source with Gloo,
# Dask/distributed, the notebook stack and the test tools. Idempotent: a finished
# environment is marked by .venv/.parallax-ready and reused.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${PARALLAX_VENV:-.venv}

# TensorFlow 2.18.1 has wheels for Python 3.10-3.12 only: take $PYTHON, else the first
# supported interpreter on PATH, and stop at once (nothing created) where there is none.
supported() { "$1" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' \
                 >/dev/null 2>&1; }
NEEDS="parallax_nb needs Python 3.10, 3.11 or 3.12 (TensorFlow 2.18.1 has no wheels for newer ones)"
if [[ -n "${PYTHON:-}" ]]; then
  if ! supported "$PYTHON"; then
    echo "[setup] PYTHON=$PYTHON is not Python 3.10-3.12. $NEEDS: set PYTHON to one" >&2
    exit 2
  fi
  PY=$PYTHON
else
  PY=
  for candidate in python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && supported "$candidate"; then
      PY=$candidate
      break
    fi
  done
  if [[ -z "$PY" ]]; then
    echo "[setup] no Python 3.10-3.12 found on PATH. $NEEDS: install python3.12" \
         "(e.g. apt-get install python3.12 python3.12-venv) or set PYTHON=/path/to/python3.x" >&2
    exit 2
  fi
fi
if [[ -n "${PARALLAX_SETUP_CHECK_PYTHON:-}" ]]; then   # say which interpreter, change nothing
  echo "$PY"
  exit 0
fi
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

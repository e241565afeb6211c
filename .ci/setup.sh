# Sourced by .ci/demo and .ci/test: make .venv (CPU torch first) and install mldb with its test extras.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import mldb, torch, faiss, sentence_transformers, starlette, uvicorn, ray" 2>/dev/null; then
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q torch==2.13.0           # the CPU build from local disk, never a CUDA download
    .venv/bin/pip install -q -e '.[test]'
fi
export PATH="$PWD/.venv/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

#!/usr/bin/env bash
# Set up a development environment from a fresh clone:
#   - a virtual environment in .venv with promptless (editable), the embedded-model
#     backend (llama-cpp-python, compiled from source for a portable CPU target by
#     scripts/install_llama.sh: ~10 minutes on 2 cores the first time, its wheel kept
#     in ~/.cache/promptless/wheels afterwards), its OpenAI-compatible server, Ray (the `ray` extra, for
#     RayExecutor and its cluster test: one binary wheel, ~10 s) and the dev tools;
#   - Debian's chromium for the report-rendering test (when running as root and missing);
#   - the smallest embedded model (smollm2-135m, ~98 MB), fetched and checksum-verified;
#   - a check that the llama.cpp build runs on this CPU (rebuilt more conservatively if not).
# Safe to run again: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "==> the embedded-model runtime: llama-cpp-python, built for the instruction sets this CPU reports (never AMX)"
bash scripts/install_llama.sh .venv/bin/python
echo "==> installing promptless with its extras"
.venv/bin/python -m pip install --quiet -e '.[local,server,ray,dev]'

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing chromium (for the HTML report test)"
    (apt-get install -y -q chromium >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }) \
      || echo "warning: chromium could not be installed; the report-rendering test will fail under CI"
  else
    echo "note: chromium is not installed; the report-rendering test needs Debian's chromium package"
  fi
fi

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "==> installing bubblewrap (the sandbox ProgramOfThought runs code in)"
    (apt-get install -y -q bubblewrap >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q bubblewrap >/dev/null; }) \
      || echo "warning: bubblewrap could not be installed; the sandbox will refuse to run code"
  else
    echo "note: bubblewrap is not installed; the sandbox needs it (as root: apt-get install bubblewrap)"
  fi
fi

echo "==> fetching the smallest embedded model"
.venv/bin/promptless models pull smollm2-135m
echo "==> checking that the llama.cpp build runs on this CPU"
bash scripts/install_llama.sh --check .venv/bin/python
echo "==> ready: run '.venv/bin/promptless demo' or '.venv/bin/python -m pytest'"

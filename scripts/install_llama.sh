#!/usr/bin/env bash
# Install llama-cpp-python (the embedded-model runtime) built for a target that runs on this machine,
# or check that the installed build runs here.
#
#   bash scripts/install_llama.sh PYTHON            build (or reuse) and install
#   bash scripts/install_llama.sh --check PYTHON    probe the installed build; rebuild if setup chose its flags
#
# llama.cpp's default build targets the build machine's own CPU (GGML_NATIVE). Such a wheel dies with
# SIGILL elsewhere, and even on the same machine when its virtual machine advertises AMX but does not
# let a process use it. So this script names the instruction sets itself, and never AMX:
# - PROMPTLESS_LLAMA_BUILD=auto (the default): the portable x86_64 target (AVX, AVX2, FMA, F16C) plus
#   the AVX-512 and VNNI extensions this CPU's flags report (AVX-512 nearly doubles prompt speed for the
#   Q4_K models on a CPU that has it: docs/benchmarks-local.md). The check below probes it and falls
#   back to the portable target if it cannot run here.
# - PROMPTLESS_LLAMA_BUILD=portable: AVX, AVX2, FMA and F16C only: one wheel for every x86_64 machine of
#   this class. Other architectures: GGML_NATIVE=OFF in both modes.
# - PROMPTLESS_LLAMA_BUILD=native: llama.cpp's own native build, guarded by the same check and fallback.
# - Your own CMAKE_ARGS are used as they are and never overridden; if that build fails the check, the
#   script says so and prints the command that installs the portable build instead.
# Built wheels are kept in $PROMPTLESS_HOME/wheels (default ~/.cache/promptless/wheels), one folder per
# version, architecture and flags, so a new clone on the same machine installs in seconds; pip's own
# cache is never used for it, so a native wheel built earlier is never picked up by mistake.
set -euo pipefail

VERSION=0.3.36
PORTABLE_X86_64="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
BASELINE_X86_64="-DGGML_NATIVE=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF -DGGML_BMI2=OFF"
PORTABLE_OTHER="-DGGML_NATIVE=OFF"

check=0
if [ "${1:-}" = "--check" ]; then check=1; shift; fi
PY=${1:?usage: install_llama.sh [--check] PYTHON}
VENV=$("$PY" -c 'import sys; print(sys.prefix)')
STAMP="$VENV/promptless-llama-build"
CACHE=${PROMPTLESS_HOME:-$HOME/.cache/promptless}/wheels
ARCH=$(uname -m)

portable() { if [ "$ARCH" = "x86_64" ]; then echo "$PORTABLE_X86_64"; else echo "$PORTABLE_OTHER"; fi; }

matched() {  # the portable target plus the AVX-512 and VNNI extensions this CPU reports; never AMX
  local args flags
  args=$(portable)
  if [ "$ARCH" != "x86_64" ]; then echo "$args"; return; fi
  flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
  has() { case "$flags" in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
  if has avx512f && has avx512cd && has avx512vl && has avx512dq && has avx512bw; then
    args="$args -DGGML_AVX512=ON"
    if has avx512vbmi; then args="$args -DGGML_AVX512_VBMI=ON"; fi
    if has avx512_vnni; then args="$args -DGGML_AVX512_VNNI=ON"; fi
    if has avx512_bf16; then args="$args -DGGML_AVX512_BF16=ON"; fi
  fi
  if has avx_vnni; then args="$args -DGGML_AVX_VNNI=ON"; fi
  echo "$args"
}

stamp_for() {  # $1: who chose the flags (user|setup), $2: the CMAKE_ARGS
  echo "llama-cpp-python==$VERSION arch=$ARCH by=$1 CMAKE_ARGS=$2"
}

installed_ok() {  # the installed package is this version and was built with these flags
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$1" ] \
    && "$PY" -c "import importlib.metadata as m, sys; sys.exit(m.version('llama_cpp_python') != '$VERSION')" 2>/dev/null
}

build_and_install() {  # $1: who, $2: CMAKE_ARGS
  local stamp key dir wheel
  stamp=$(stamp_for "$1" "$2")
  if installed_ok "$stamp"; then
    echo "    llama-cpp-python $VERSION already installed (CMAKE_ARGS=$2)"
    return 0
  fi
  key=$(printf '%s' "llama-cpp-python==$VERSION arch=$ARCH CMAKE_ARGS=$2" | sha256sum | cut -c1-16)
  dir="$CACHE/llama-cpp-python-$VERSION-$key"
  wheel=$(ls "$dir"/llama_cpp_python-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$wheel" ]; then
    echo "    compiling llama-cpp-python $VERSION with CMAKE_ARGS=\"$2\" (about 10 minutes on 2 cores)"
    rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
    CMAKE_ARGS="$2" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)} \
      "$PY" -m pip wheel --quiet --no-deps --no-cache-dir --no-binary llama-cpp-python \
      -w "$dir.tmp" "llama-cpp-python==$VERSION"
    rm -rf "$dir" && mv "$dir.tmp" "$dir"
    wheel=$(ls "$dir"/llama_cpp_python-*.whl | head -n 1)
  else
    echo "    reusing the wheel built earlier with CMAKE_ARGS=\"$2\""
  fi
  "$PY" -m pip install --quiet --force-reinstall --no-deps "$wheel"
  echo "$stamp" > "$STAMP"
}

fix_command() {
  echo "CMAKE_ARGS=\"$(portable)\" $PY -m pip install --force-reinstall --no-deps --no-cache-dir --no-binary llama-cpp-python llama-cpp-python==$VERSION"
}

if [ "$check" = 0 ]; then
  if [ -n "${CMAKE_ARGS:-}" ]; then
    build_and_install user "$CMAKE_ARGS"
  else
    case "${PROMPTLESS_LLAMA_BUILD:-auto}" in
      auto) build_and_install setup "$(matched)" ;;
      portable) build_and_install setup "$(portable)" ;;
      native) build_and_install setup "-DGGML_NATIVE=ON" ;;
      *) echo "error: PROMPTLESS_LLAMA_BUILD must be auto, portable or native" >&2; exit 2 ;;
    esac
  fi
  exit 0
fi

# --check: probe the installed build in a child process (python -m promptless.lm.preflight).
probe() {
  local rc=0
  "$PY" -m promptless.lm.preflight --check || rc=$?
  return $rc
}
rc=0; probe || rc=$?
[ "$rc" = 0 ] && exit 0
if [ "$rc" = 2 ]; then
  echo "warning: the llama.cpp build could not be checked (no model yet?); 'promptless doctor' checks it later" >&2
  exit 0
fi
who=$(sed -n 's/.* by=\([a-z]*\) .*/\1/p' "$STAMP" 2>/dev/null || true)
if [ "$who" != "setup" ]; then
  echo "error: llama-cpp-python was built with your CMAKE_ARGS (or outside this script), and that build cannot" >&2
  echo "run on this machine. Your CMAKE_ARGS are left as they are; to install the portable build instead, run:" >&2
  echo "    $(fix_command)" >&2
  exit 1
fi
current=$(sed -n 's/.*CMAKE_ARGS=//p' "$STAMP")
for fallback in "$(portable)" "$BASELINE_X86_64"; do
  [ "$fallback" = "$current" ] && continue
  if [ "$fallback" = "$BASELINE_X86_64" ] && [ "$ARCH" != "x86_64" ]; then continue; fi
  echo "==> the build with CMAKE_ARGS=\"$current\" cannot run here; rebuilding with CMAKE_ARGS=\"$fallback\""
  build_and_install setup "$fallback"
  current=$fallback
  rc=0; probe || rc=$?
  [ "$rc" = 0 ] && exit 0
done
echo "error: no llama-cpp-python build that this script knows runs on this machine; see 'promptless doctor'" >&2
exit 1

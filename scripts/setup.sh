#!/usr/bin/env bash
# Idempotent project setup: a cached Python virtualenv holding the pinned
# libtorch (torch 2.11.0 from PyPI) that tch 0.24 links against, plus the
# numerical oracles used by the tests (torchvision) and the peers of the
# loader benchmarks (scikit-learn, scikit-image, pillow).
#
# The venv lives outside the clone so every clone on the machine shares it:
#   ${BRIGADE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/brigade/venv-torch-2.11.0}
# It is rebuilt when the installed torch version is not the pinned one.
#
# Prints the environment to export (eval "$(scripts/setup.sh --env)").
set -euo pipefail

TORCH_VERSION="2.11.0"
TORCHVISION_VERSION="0.26.0"
TIMM_VERSION="1.0.31"
CACHE_ROOT="${XDG_CACHE_HOME:-$HOME/.cache}/brigade"
VENV="${BRIGADE_VENV:-$CACHE_ROOT/venv-torch-$TORCH_VERSION}"
PY="$VENV/bin/python"
STAMP="$VENV/.brigade-setup-v1"

want_env=0
[ "${1:-}" = "--env" ] && want_env=1
# --cuda (or BRIGADE_CUDA=1): also the CUDA/NCCL headers the brigade-torch-ext
# `cuda` feature compiles against (pip cuda-toolkit[crt,cccl]).
want_cuda="${BRIGADE_CUDA:-0}"
case " $* " in *" --cuda "*) want_cuda=1 ;; esac

log() { [ "$want_env" = 1 ] && echo "# $*" >&2 || echo "setup: $*" >&2; }

venv_ok() {
  [ -x "$PY" ] && [ -f "$STAMP" ] &&
    [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("torch").split("+")[0])' 2>/dev/null)" = "$TORCH_VERSION" ]
}

# System packages (Debian): gloo headers for torch-ext, libjpeg-turbo for the
# optional turbojpeg decoder. Installed only when missing.
if ! bash "$(dirname "${BASH_SOURCE[0]}")/ci-deps.sh" >&2; then
  log "could not install the Debian packages listed in scripts/ci-deps.sh (need root): install them by hand"
  exit 1
fi

if [ -n "${LIBTORCH:-}" ]; then
  log "using the user's LIBTORCH=$LIBTORCH (the python oracle venv is still set up for tests)"
fi

if ! venv_ok; then
  log "creating $VENV (torch==$TORCH_VERSION, about 5 GB, a few minutes)"
  rm -rf "$VENV"
  mkdir -p "$CACHE_ROOT"
  python3 -m venv "$VENV"
  "$PY" -m pip install --quiet --upgrade pip >&2
  "$PY" -m pip install --quiet \
    "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" \
    numpy pillow scikit-learn scikit-image safetensors >&2
  "$PY" - <<'EOF' >&2
import torch, torchvision
print("torch", torch.__version__, "torchvision", torchvision.__version__,
      "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI)
EOF
  touch "$STAMP"
fi

# timm: the oracle for weight files as timm publishes them (pure Python; its
# torch requirement is already met, so pip leaves torch alone).
if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("timm"))' 2>/dev/null)" != "$TIMM_VERSION" ]; then
  log "installing timm==$TIMM_VERSION (test oracle for timm-published weights)"
  "$PY" -m pip install --quiet "timm==$TIMM_VERSION" >&2
fi

if [ "$want_cuda" = 1 ] &&
  ! "$PY" -c 'import importlib.metadata as m; m.version("nvidia-cuda-crt"); m.version("nvidia-cuda-cccl")' 2>/dev/null; then
  log "installing CUDA headers (cuda-toolkit[crt,cccl]==13.0.2) for brigade-torch-ext's cuda feature"
  "$PY" -m pip install --quiet "cuda-toolkit[crt,cccl]==13.0.2" >&2
fi

# Found without importing torch (that takes seconds on every call).
TORCH_LIB="$("$PY" -c 'import importlib.util, os; print(os.path.join(os.path.dirname(importlib.util.find_spec("torch").origin), "lib"))')"

if [ "$want_env" = 1 ]; then
  echo "export BRIGADE_VENV='$VENV'"
  echo "export BRIGADE_PYTHON='$PY'"
  echo "export PATH='$VENV/bin':\"\$PATH\""
  if [ -z "${LIBTORCH:-}" ]; then
    echo "export LIBTORCH_USE_PYTORCH=1"
  fi
  echo "export BRIGADE_TORCH_LIB='$TORCH_LIB'"
else
  log "ok: $VENV"
fi

# Shared set-up for tools/workbook.sh and tools/test.sh (sourced, not run).
# Creates .venv with the package installed; optionally installs Debian packages first.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"

# Debian packages the lessons and tests use: a real nginx to compare with, wrk for load,
# Chromium for browser tests (with fonts-noto-cjk, or the Korean edition renders as boxes),
# bubblewrap for sandboxed grading, iproute2/ping for namespaces, nodejs (with npm) for the
# classroom hub's configurable-http-proxy (deploylab classroom setup).
APT_PACKAGES="python3-venv chromium fonts-noto-cjk nginx libnginx-mod-stream wrk bubblewrap curl iproute2 iputils-ping nftables nodejs"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"
  elif command -v sudo >/dev/null 2>&1; then sudo "$@"
  else return 1
  fi
}

install_system_packages() {
  local missing=""
  for package in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing="$missing $package"
  done
  [ -z "$missing" ] && return 0
  echo "==> installing Debian packages:$missing"
  if ! as_root apt-get update -qq || ! DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq $missing >/dev/null; then
    echo "!! could not install:$missing (need root or sudo); tests that need them will skip" >&2
  fi
  # Debian's nginx package starts a system nginx on port 80; the workbook runs its own.
  if [[ "$missing" == *nginx* ]] && command -v systemctl >/dev/null 2>&1; then
    as_root systemctl disable --now nginx >/dev/null 2>&1 || true
  fi
  as_root service nginx stop >/dev/null 2>&1 || true
}

make_venv() {  # $1: pip extras, e.g. "[test]" or ""
  local python=${PYTHON:-python3}
  if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating $VENV"
    "$python" -m venv "$VENV"
  fi
  echo "==> installing deploylab$1 into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -e ".$1"
}

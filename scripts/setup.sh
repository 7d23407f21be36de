#!/usr/bin/env bash
# Install what TuneForge needs on a Debian/Ubuntu machine, idempotently.
#   scripts/setup.sh          runtime: FluidSynth, SoundFonts, the .venv with the package
#   scripts/setup.sh --test   also: Node + Azurite, Chromium, the dev tools
set -euo pipefail
cd "$(dirname "$0")/.."
want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null && SUDO="sudo" || { echo "setup: run as root or install sudo" >&2; exit 1; }
fi

packages=(libfluidsynth3 fluidsynth fluid-soundfont-gm timgm6mb-soundfont libsndfile1 python3-venv python3-dev)
if (( want_test )); then packages+=(nodejs npm chromium chromium-driver); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node from elsewhere (nvm, NodeSource) is fine: only install Debian's when there is none.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
# python3-venv/-dev are only needed when the system python lacks venv (pyenv builds have it).
if python3 -c "import venv, ensurepip" 2>/dev/null; then
  missing=("${missing[@]/python3-venv}"); missing=("${missing[@]/python3-dev}")
fi
read -r -a missing <<< "${missing[*]}"
if (( ${#missing[@]} )); then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python 3.11 or newer: the default python3 if it is recent enough, else a versioned one
# (installed from the distribution's packages where it has them, e.g. Ubuntu 22.04).
python=""
for candidate in python3 python3.13 python3.12 python3.11; do
  if command -v "$candidate" >/dev/null && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    python="$candidate"; break
  fi
done
if [[ -z "$python" ]]; then
  echo "setup: installing Python 3.11"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3.11 python3.11-venv \
    python3.11-dev >/dev/null
  python=python3.11
fi
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
extras=""
(( want_test )) && extras="[dev,train]"
stamp=".venv/.tuneforge-deps-$(sha256sum pyproject.toml | cut -c1-16)-$( (( want_test )) && echo test || echo run)"
if [[ ! -f "$stamp" ]]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -e ".${extras}" --config-settings editable_mode=strict
  rm -f .venv/.tuneforge-deps-*; touch "$stamp"
else
  # Strict editable installs link each file: relink so new modules are importable.
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . --config-settings editable_mode=strict \
    >/dev/null 2>&1
fi

if (( want_test )); then
  if [[ ! -x node_modules/.bin/azurite-blob ]]; then
    echo "setup: installing Azurite (npm)"
    npm ci --no-audit --no-fund --loglevel=error
  fi
fi

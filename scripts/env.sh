#!/usr/bin/env bash
# Create the virtual environment in .venv on first use and install fairsqueeze into it.
# Sourced by demo.sh and test.sh. PYTHON picks the interpreter (default python3);
# FAIRSQUEEZE_TORCH picks the PyTorch build installed before the package.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv="$repo/.venv"
python=${PYTHON:-python3}
torch_spec=${FAIRSQUEEZE_TORCH:-"torch==2.14.1 torchvision==0.29.1"}
stamp="$venv/.fairsqueeze-installed"

if [[ ! -x "$venv/bin/python" ]]; then
    echo "creating the virtual environment in $venv"
    "$python" -m venv "$venv"
fi

# Reinstall when pyproject.toml is newer than the last install.
if [[ ! -f "$stamp" || "$repo/pyproject.toml" -nt "$stamp" ]]; then
    echo "installing fairsqueeze and its dependencies (first run only)"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    if ! "$venv/bin/python" -c "import torch, torchvision" 2>/dev/null; then
        # shellcheck disable=SC2086
        "$venv/bin/python" -m pip install --quiet $torch_spec
    fi
    "$venv/bin/python" -m pip install --quiet -e "$repo[dev]"
    touch "$stamp"
fi

export PATH="$venv/bin:$PATH"

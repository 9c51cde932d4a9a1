#!/usr/bin/env bash
# Run the Adult demo audit: build the reference model and tables on first use, then audit
# every default compression recipe and write the report to runs/adult-demo.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/env.sh"
cd "$repo"

build=examples/adult/build
if [[ ! -f "$build/spec.yaml" || ! -f "$build/adult-mlp.onnx" ]]; then
    echo "building the Adult reference model and tables in $build"
    python examples/adult/build.py --out "$build"
fi

out=${1:-runs/adult-demo}
fairsqueeze audit --spec "$build/spec.yaml" --out "$out"

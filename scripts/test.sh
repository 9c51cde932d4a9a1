#!/usr/bin/env bash
# Run the test suite: create the environment on first use, make sure PostgreSQL and Redis are up,
# then run pytest. Extra arguments go to pytest. Fails when pytest collects no tests.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/env.sh"
cd "$repo"

bash scripts/services.sh

status=0
python -m pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit $status

#!/usr/bin/env bash
# Run the test suite: create the environment on first use, make sure PostgreSQL and Redis are up,
# then run pytest. Extra arguments go to pytest. Fails when pytest collects no tests.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
source "$repo/scripts/env.sh"
cd "$repo"

bash scripts/services.sh

# The HTML report's screenshot test needs Chromium; install it on CI or as root when it is missing.
if ! command -v chromium >/dev/null 2>&1 && { [[ -n "${CI:-}" ]] || [[ $(id -u) -eq 0 ]]; }; then
    echo "installing chromium for the HTML report screenshot test"
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null; then
        echo "could not install chromium with apt-get; the screenshot test will be skipped" >&2
    fi
fi

status=0
python -m pytest "$@" || status=$?
if [[ $status -eq 5 ]]; then
    echo "pytest collected no tests; treating that as a failure" >&2
    exit 1
fi
exit $status

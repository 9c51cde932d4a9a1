#!/usr/bin/env bash
# Check that PostgreSQL and Redis respond on 127.0.0.1, starting the local servers when they do not.
# The service tests use database `test` on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 unless
# FAIRSQUEEZE_TEST_DATABASE_URL and FAIRSQUEEZE_TEST_REDIS_URL are set.
set -uo pipefail

postgres_ready() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_ready() { [[ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" == "PONG" ]]; }

if ! postgres_ready && command -v pg_ctlcluster >/dev/null; then
    echo "starting PostgreSQL"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
if ! redis_ready && command -v redis-server >/dev/null; then
    echo "starting Redis"
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
        --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi

for _ in $(seq 1 30); do
    if postgres_ready && redis_ready; then
        exit 0
    fi
    sleep 1
done

postgres_ready || echo "PostgreSQL is not reachable on 127.0.0.1:5432; start it or set FAIRSQUEEZE_TEST_DATABASE_URL" >&2
redis_ready || echo "Redis is not reachable on 127.0.0.1:6379; start it or set FAIRSQUEEZE_TEST_REDIS_URL" >&2
exit 1

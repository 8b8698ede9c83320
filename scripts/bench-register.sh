#!/usr/bin/env bash
# The register benchmark (issue 19): 1,000,000 items in PostgreSQL, the first
# page of a filtered full-text search (p50/p95 over 50 queries) against the
# unfiltered first page as baseline, in one run. Its own database
# (pietura_bench_register) is filled once with generate_series and kept, so
# later runs only measure; drop it to start again. Not part of scripts/test.sh.
#
#   scripts/bench-register.sh                 # release build
#   BENCH_PROFILE=dev scripts/bench-register.sh
#   BENCH_ITEMS=200000 BENCH_QUERIES=100 scripts/bench-register.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"
ensure_postgres
export PIETURA_TEST_DATABASE_URL=${PIETURA_TEST_DATABASE_URL:-postgres://pietura:pietura@127.0.0.1:5432/pietura_test}
export PIETURA_LOG=${PIETURA_LOG:-warn}
PROFILE=${BENCH_PROFILE:-release}
if [ "$PROFILE" = release ]; then
    cargo run --release --locked --quiet --example bench_register
else
    cargo run --locked --quiet --example bench_register
fi

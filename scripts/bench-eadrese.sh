#!/usr/bin/env bash
# The e-adrese benchmark: DIV → registered beside the raw list+get rate of
# the same service, in one run. Starts the tests' DIV stand-in
# (tests/support/div/div_standin.py: mutual TLS, WS-Security checked by
# xmlsec, encrypted files) on spare loopback ports with a throwaway test CA,
# makes sure RabbitMQ and PostgreSQL run, then `pietura bench --eadrese`.
#
#   scripts/bench-eadrese.sh            # 500 messages
#   scripts/bench-eadrese.sh 2000
set -euo pipefail

ITEMS=${1:-500}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

ensure_packages python3-xmlsec python3-lxml python3-cryptography openssl \
    rabbitmq-server postgresql postgresql-client
ensure_rabbitmq
ensure_postgres

STATE=$(mktemp -d /tmp/pietura-bench-div.XXXXXX)
cd "$STATE"
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Pietura bench CA" \
    -keyout ca.key -out ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=127.0.0.1" -keyout server.key -out server.csr 2>/dev/null
printf 'subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n' >san.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile san.ext -out server.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=pasvaldiba" -keyout client.key -out client.csr 2>/dev/null
printf 'extendedKeyUsage = clientAuth\nbasicConstraints = CA:FALSE\n' >client.ext
openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile client.ext -out client.pem 2>/dev/null
cd "$ROOT"

PORT=18443
while port_open "$PORT"; do PORT=$((PORT + 1)); done
CONTROL=$((PORT + 1))
while port_open "$CONTROL"; do CONTROL=$((CONTROL + 1)); done
/usr/bin/python3 tests/support/div/div_standin.py --port "$PORT" --control-port "$CONTROL" \
    --ca "$STATE/ca.pem" --cert "$STATE/server.pem" --key "$STATE/server.key" \
    --institution-cert "$STATE/client.pem" --institution _DEFAULT@90000000001 \
    >"$STATE/standin.log" 2>&1 &
STANDIN=$!
stop_standin() {
    kill "$STANDIN" 2>/dev/null || true
    rm -rf "$STATE"
}
trap stop_standin EXIT
wait_port "$CONTROL" 20
wait_port "$PORT" 20

psql -q "postgres://pietura:pietura@127.0.0.1:5432/postgres" \
    -c "DROP DATABASE IF EXISTS pietura_bench_eadrese" -c "CREATE DATABASE pietura_bench_eadrese" </dev/null

PIETURA__BUS__KIND=amqp \
PIETURA__BUS__URL=${PIETURA_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f} \
PIETURA__DATABASE__URL=postgres://pietura:pietura@127.0.0.1:5432/pietura_bench_eadrese \
PIETURA_LOG=${PIETURA_LOG:-warn} \
    cargo run --release --quiet -- bench --items "$ITEMS" \
    --eadrese "https://127.0.0.1:$PORT/UnifiedService.svc" \
    --div-control "http://127.0.0.1:$CONTROL" --div-certs "$STATE" </dev/null

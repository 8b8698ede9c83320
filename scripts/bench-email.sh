#!/usr/bin/env bash
# The e-mail benchmark: IMAP → registered beside the raw IMAP fetch rate of
# the same mailbox, in one run. Starts a throwaway Dovecot (the tests' own
# config, tests/fixtures/dovecot/dovecot.conf.in) on a spare loopback port,
# makes sure RabbitMQ and PostgreSQL run, then `pietura bench --email`.
#
#   scripts/bench-email.sh            # 2000 mails
#   scripts/bench-email.sh 5000
#
# Runs as root (Dovecot drops to the `mail` user); installs dovecot-imapd.
set -euo pipefail

ITEMS=${1:-2000}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

ensure_packages dovecot-imapd rabbitmq-server postgresql postgresql-client
ensure_rabbitmq
ensure_postgres

STATE=$(mktemp -d /tmp/pietura-bench-dovecot.XXXXXX)
chmod 755 "$STATE"
PORT=10143
while port_open "$PORT"; do PORT=$((PORT + 1)); done
USER_NAME=bench@example.lv
export PIETURA_BENCH_IMAP_PASSWORD=bench-pass
mkdir -p "$STATE/home/Maildir/"{new,cur,tmp} "$STATE/run"
chown -R 8:8 "$STATE/home"
echo "$USER_NAME:{PLAIN}$PIETURA_BENCH_IMAP_PASSWORD:8:8::$STATE/home::" >"$STATE/users"
sed -e "s|@ROOT@|$STATE|g" -e "s|@PORT@|$PORT|g" -e "s|@MAIL_UID@|8|g" \
    -e "s|@USERS@|$STATE/users|g" -e "s|@IMAPS_PORT@|0|g" -e "s|@SSL@|ssl = no|g" -e "s|@EXTRA@||g" \
    tests/fixtures/dovecot/dovecot.conf.in >"$STATE/dovecot.conf"
dovecot -c "$STATE/dovecot.conf" </dev/null >>"$STATE/start.log" 2>&1
stop_dovecot() {
    doveadm -c "$STATE/dovecot.conf" stop >/dev/null 2>&1 || true
    rm -rf "$STATE"
}
trap stop_dovecot EXIT
wait_port "$PORT" 20

psql -q "postgres://pietura:pietura@127.0.0.1:5432/postgres" \
    -c "DROP DATABASE IF EXISTS pietura_bench_email" -c "CREATE DATABASE pietura_bench_email" </dev/null

PIETURA__BUS__KIND=amqp \
PIETURA__BUS__URL=${PIETURA_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f} \
PIETURA__DATABASE__URL=postgres://pietura:pietura@127.0.0.1:5432/pietura_bench_email \
PIETURA_LOG=${PIETURA_LOG:-warn} \
    cargo run --release --quiet -- bench --email --items "$ITEMS" \
    --imap "127.0.0.1:$PORT" --imap-user "$USER_NAME" </dev/null

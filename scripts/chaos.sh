#!/usr/bin/env bash
# The long chaos run (issue 21): tests/chaos.rs with many more items and
# faults than the short run in scripts/test.sh, its figures written to
# docs/reliability.md.
#
#   scripts/chaos.sh [ITEMS [KILLS [NODE_STOPS [PG_RESTARTS [STALL_RESTARTS \
#                    [EMBEDDED_ITEMS [EMBEDDED_KILLS]]]]]]]
#   scripts/chaos.sh 20000 50 10 5 6 3000 20     # the issue's long version
#
# Starts its own three-node RabbitMQ cluster, PostgreSQL and three daemons
# (the shared servers on 5672/5432 are not touched); needs the Debian
# packages scripts/test.sh installs. PIETURA_CHAOS_SEED=N repeats a run's
# fault order.
set -euo pipefail

ITEMS=${1:-20000}
KILLS=${2:-50}
NODE_STOPS=${3:-10}
PG_RESTARTS=${4:-5}
STALL_RESTARTS=${5:-6}
EMBEDDED_ITEMS=${6:-3000}
EMBEDDED_KILLS=${7:-20}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
if [[ -n ${HOME:-} && -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v jq >/dev/null || {
    echo "scripts/chaos.sh: jq is needed (apt-get install jq)" >&2
    exit 1
}

OUT=$(mktemp -d "${TMPDIR:-/tmp}/pietura-chaos.XXXXXX")
export OMP_THREAD_LIMIT=${OMP_THREAD_LIMIT:-1}
export PIETURA_CHAOS_ITEMS=$ITEMS PIETURA_CHAOS_KILLS=$KILLS
export PIETURA_CHAOS_NODE_STOPS=$NODE_STOPS PIETURA_CHAOS_PG_RESTARTS=$PG_RESTARTS
export PIETURA_CHAOS_STALL_RESTARTS=$STALL_RESTARTS
# Citizens sending at once (the short run in scripts/test.sh uses 6).
export PIETURA_CHAOS_WORKERS=${PIETURA_CHAOS_WORKERS:-12}
export PIETURA_CHAOS_EMBEDDED_ITEMS=$EMBEDDED_ITEMS PIETURA_CHAOS_EMBEDDED_KILLS=$EMBEDDED_KILLS
export PIETURA_CHAOS_REPORT=$OUT/cluster.json PIETURA_CHAOS_EMBEDDED_REPORT=$OUT/embedded.json

# One test at a time: the cluster run needs both cores.
set +e
cargo test --locked --test chaos -- --test-threads=1 --nocapture 2>&1 |
    tee "$OUT/log" | grep --line-buffered -E '^chaos|test result|panicked|FAILED'
rc=${PIPESTATUS[0]}
set -e

row() { # FILE
    [[ -f $1 ]] || {
        echo "| (no figures: the run failed before its accounting, see the log) |||||||||||"
        return
    }
    jq -r '[(if .daemon_kills > 0 then "\(.daemon_kills) daemon kills" else empty end),
            (if .node_stops > 0 then "\(.node_stops) broker node kills" else empty end),
            (if .pg_restarts > 0 then "\(.pg_restarts) PostgreSQL immediate restarts" else empty end),
            (if .stall_restarts > 0 then "a registry stall across \(.stall_restarts) daemon kills" else empty end),
            (if .backend | test("embedded") then "a poison message" else empty end)] as $faults
        | "| \(.backend) | \(.items_accepted) (\(.sms_accepted) SMS, \(.mails_accepted) mails, \(.scans_accepted) scans) | \($faults | join(", ")) | \(.lost) | \(.duplicated) | \(.gaps) | \(.notices_missing) | \(.answers_sent) sent, \(.answers_twice) twice | \(.scans_set_aside) | \(.parked) | \(.longest_recovery_ms / 100 | floor / 10) s | \(.seconds) s |"' "$1"
}

{
    cat <<EOF
# Reliability: the chaos run

Produced by \`scripts/chaos.sh $ITEMS $KILLS $NODE_STOPS $PG_RESTARTS $STALL_RESTARTS $EMBEDDED_ITEMS $EMBEDDED_KILLS\`
on $(date -u +%Y-%m-%d) ($(getconf _NPROCESSORS_ONLN) cores shared with other work, $(git rev-parse --short HEAD 2>/dev/null || echo '?'); exit status $rc).

What runs (\`tests/chaos.rs\`): three \`pietura run\` daemons on a three-node
RabbitMQ cluster (quorum queues on all three nodes) and PostgreSQL, all
started by the test on loopback; citizens send web forms, signed SMS
webhooks (one in three), mails into a real Dovecot that the daemons share
(one in six; acknowledged through a real SMTP server) and scanned letters
with a text layer into one scan folder the daemons share (one in twelve),
some with awkward text (20,000
characters, backslash sequences such as \`\\u0000\`, a NUL, a lone combining
mark), and retry as a browser or an SMS gateway would when a door does not
answer 2xx. Meanwhile daemons are SIGKILLed and restarted, broker nodes
are SIGKILLed and brought back one at a time, PostgreSQL is stopped with
\`-m immediate\` and started again, and the number counters are locked
while daemons are killed and restarted. Then every item a door accepted
is looked up. The same for the embedded default (one daemon, SQLite and
the embedded queue) with SIGKILLs and a poison message.

| Setup | Items accepted | Faults | Lost | Registered twice | Gaps | Notices missing | Answers (SMS and mail) | Scans set aside | Parked | Longest recovery | Run |
|---|---|---|---|---|---|---|---|---|---|---|---|
$(row "$OUT/cluster.json")
$(row "$OUT/embedded.json")

- *Lost*: accepted (2xx) but not registered. *Registered twice*: one
  submission under two numbers. *Gaps*: numbers missing or given twice in a
  series, or a counter ahead of the highest number. *Notices missing*:
  registered items with no notice in their unit's (or the review) queue.
  *Answers*: counted at the SMS gateway's stand-in per number and at the
  SMTP server per address, up to 60 s after the load (an answer claimed by a daemon that was then killed
  waits until its claim runs out, so fewer may have gone out by then; none
  may go out twice). *Scans set aside*: scan files moved to \`failed/\`
  although they were good letters.
  *Longest recovery*: from a fault until every daemon answered
  \`/readyz\` again (node stops include the 3 s the node is down).
- The test's PostgreSQL runs with \`fsync=off\`: \`-m immediate\` kills the
  server, not the machine, so nothing committed is lost by it.
- Door refusals during faults (503 while no node confirms, no answer from a
  killed daemon) are retried by the client and are not losses:
EOF
    for f in "$OUT"/cluster.json "$OUT"/embedded.json; do
        [[ -f $f ]] && jq -r '"  \(.backend): \(.refused_attempts | to_entries | map("\(.value)× \(.key)") | join(", ") | if . == "" then "none" else . end)."' "$f"
    done
} >docs/reliability.md

echo "figures written to docs/reliability.md (exit status $rc; the run's log: $OUT/log)"
exit "$rc"

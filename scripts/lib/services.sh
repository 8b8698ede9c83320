# shellcheck shell=bash
# Helpers for scripts/test.sh: Debian packages and the real servers the tests
# talk to (RabbitMQ on 127.0.0.1:5672, PostgreSQL on 127.0.0.1:5432).
#
# Source this file; it defines functions only and changes no shell options.
# Everything is idempotent: a server that already listens is left alone
# (never restarted or stopped), and the database role/database are only
# created when missing.
#
# Works as root on a bare Debian 12 machine without systemd and without stdin.

# Log file for servers started from here (their own stdout/stderr must not hold
# the caller's pipe open, or a piped CI run never ends).
PIETURA_SERVICES_LOG_DIR=${PIETURA_SERVICES_LOG_DIR:-${TMPDIR:-/tmp}/pietura-test-services}

svc_log() { printf '[services] %s\n' "$*" >&2; }
svc_die() {
    printf '[services] ERROR: %s\n' "$*" >&2
    return 1
}

# port_open PORT: true if something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    # shellcheck disable=SC2016 # $1 is expanded by the inner bash
    timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_port PORT SECONDS: wait until 127.0.0.1:PORT accepts connections.
wait_port() {
    local port=$1 secs=${2:-60} deadline
    deadline=$((SECONDS + secs))
    while ! port_open "$port"; do
        if ((SECONDS >= deadline)); then
            svc_die "nothing listens on 127.0.0.1:$port after ${secs}s"
            return 1
        fi
        sleep 0.5
    done
}

# pkg_installed PKG: true if the Debian package is fully installed.
pkg_installed() {
    dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'
}

# ensure_packages PKG...: install the missing ones (apt-get update only if
# something is missing). Needs root for that case only.
ensure_packages() {
    local missing=() p
    for p in "$@"; do
        pkg_installed "$p" || missing+=("$p")
    done
    if ((${#missing[@]} == 0)); then
        return 0
    fi
    if [[ $(id -u) != 0 ]]; then
        svc_die "missing Debian packages (${missing[*]}); run as root or install them: apt-get install ${missing[*]}"
        return 1
    fi
    svc_log "installing missing packages: ${missing[*]}"
    local apt_opts=(-q -y -o Dpkg::Use-Pty=0 -o DPkg::Lock::Timeout=600)
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" update </dev/null
    DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" </dev/null
}

# ensure_rabbitmq: RabbitMQ listening on 127.0.0.1:5672 (guest/guest works from
# loopback). Starts Debian's rabbitmq-server detached if nothing listens yet.
ensure_rabbitmq() {
    if port_open 5672; then
        svc_log "rabbitmq: already listening on 5672"
        return 0
    fi
    command -v rabbitmq-server >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/usr/lib/rabbitmq/bin
    command -v rabbitmq-server >/dev/null 2>&1 || {
        svc_die "rabbitmq-server not found (apt-get install rabbitmq-server)"
        return 1
    }
    export ERL_EPMD_ADDRESS=127.0.0.1
    # The default node name is rabbit@<short hostname>; if that name does not
    # resolve (common in containers) the node cannot start. Fall back to
    # localhost unless the machine's rabbitmq-env.conf chose a name already.
    if [[ -z ${RABBITMQ_NODENAME:-} ]] &&
        ! grep -qs '^[[:space:]]*\(export[[:space:]]\+\)\?NODENAME=' /etc/rabbitmq/rabbitmq-env.conf &&
        ! getent hosts "$(hostname -s 2>/dev/null || echo localhost)" >/dev/null 2>&1; then
        export RABBITMQ_NODENAME=rabbit@localhost
    fi
    mkdir -p "$PIETURA_SERVICES_LOG_DIR"
    local log=$PIETURA_SERVICES_LOG_DIR/rabbitmq-start.log
    svc_log "rabbitmq: starting (rabbitmq-server -detached, log $log)"
    # Root runs Debian's wrapper, which switches to the rabbitmq user. A failed
    # start (e.g. a node already booting) is not fatal: the port decides.
    if ! (cd / && rabbitmq-server -detached </dev/null >>"$log" 2>&1); then
        svc_log "rabbitmq: 'rabbitmq-server -detached' failed; waiting for the port anyway (see $log)"
    fi
    if ! wait_port 5672 120; then
        tail -n 30 "$log" >&2 2>/dev/null || true
        svc_die "rabbitmq did not come up on 127.0.0.1:5672"
        return 1
    fi
    if command -v rabbitmqctl >/dev/null 2>&1; then
        (cd / && timeout 90 rabbitmqctl -q await_startup </dev/null >>"$log" 2>&1) ||
            svc_log "rabbitmq: 'rabbitmqctl await_startup' failed (ignored; the port is open)"
    fi
    svc_log "rabbitmq: up on 5672"
}

# pg_superuser_psql [PSQL-ARGS...]: psql as the postgres superuser over the
# unix socket (SQL from stdin unless -c is given).
pg_superuser_psql() {
    local psql=(psql -X -q -v ON_ERROR_STOP=1 -d postgres "$@")
    if [[ $(id -u) == 0 ]]; then
        (cd / && su postgres -s /bin/sh -c "$(printf '%q ' "${psql[@]}")")
    elif [[ $(id -un) == postgres ]]; then
        "${psql[@]}"
    else
        svc_die "creating the test role/database needs root (or the postgres user)"
        return 1
    fi
}

# ensure_postgres: PostgreSQL listening on 127.0.0.1:5432 with a LOGIN CREATEDB
# role pietura/pietura and a UTF-8 database pietura_test owned by it. The
# password role works whether pg_hba says trust or scram-sha-256.
ensure_postgres() {
    local role=pietura password=pietura db=pietura_test
    if port_open 5432; then
        svc_log "postgres: already listening on 5432"
    else
        local version
        version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
        if [[ -z $version || ! -d /etc/postgresql/$version/main ]]; then
            # e.g. create_main_cluster = false, or a policy that skipped it
            version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n 1)
            [[ -n $version ]] || {
                svc_die "no PostgreSQL server installed (apt-get install postgresql)"
                return 1
            }
            svc_log "postgres: creating cluster $version/main"
            pg_createcluster --locale C.UTF-8 --port 5432 "$version" main </dev/null >&2 || {
                svc_die "pg_createcluster $version main failed"
                return 1
            }
        fi
        mkdir -p "$PIETURA_SERVICES_LOG_DIR"
        local log=$PIETURA_SERVICES_LOG_DIR/postgres-start.log
        svc_log "postgres: starting cluster $version/main (log $log)"
        if ! pg_ctlcluster --skip-systemctl-redirect "$version" main start </dev/null >>"$log" 2>&1; then
            svc_log "postgres: pg_ctlcluster start failed; waiting for the port anyway (see $log)"
        fi
        if ! wait_port 5432 60; then
            tail -n 30 "/var/log/postgresql/postgresql-$version-main.log" >&2 2>/dev/null || true
            svc_die "postgres did not come up on 127.0.0.1:5432"
            return 1
        fi
        svc_log "postgres: up on 5432"
    fi

    # The socket accepts connections a moment after the TCP port in some
    # start-ups; retry briefly.
    local _
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        pg_superuser_psql -c 'select 1' </dev/null >/dev/null 2>&1 && break
        sleep 1
    done

    svc_log "postgres: ensuring role '$role' and database '$db'"
    if ! pg_superuser_psql <<SQL
SELECT 'CREATE ROLE $role' WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$role')\gexec
ALTER ROLE $role WITH LOGIN CREATEDB PASSWORD '$password';
SELECT 'CREATE DATABASE $db OWNER $role TEMPLATE template0 ENCODING ''UTF8'' LOCALE ''C.UTF-8'''
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db')\gexec
ALTER DATABASE $db OWNER TO $role;
SQL
    then
        svc_die "could not create role '$role' / database '$db' as the postgres superuser"
        return 1
    fi

    # Prove the credentials the tests use actually work over TCP.
    if ! PGPASSWORD=$password PGCONNECT_TIMEOUT=10 psql -X -q -h 127.0.0.1 -p 5432 -U "$role" -d "$db" \
        -tAc 'select 1' </dev/null >/dev/null; then
        svc_die "cannot log in as $role to $db on 127.0.0.1:5432 (check pg_hba.conf)"
        return 1
    fi
    svc_log "postgres: $role@127.0.0.1:5432/$db ready"
}

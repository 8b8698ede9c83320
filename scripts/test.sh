#!/usr/bin/env bash
# Pietura's one test command: installs what is missing, makes sure the real
# test servers run, then fmt + clippy + tests.
#
#   scripts/test.sh                      # everything
#   scripts/test.sh -- some_filter       # extra args go to `cargo test`
#   PIETURA_SKIP_LINT=1 scripts/test.sh  # skip fmt and clippy (quick loops)
#
# Runs as root on a bare Debian 12 machine with no stdin; safe to run again
# (servers already running are reused, never restarted).
set -euo pipefail

# Debian packages the build and the tests need. Add test servers here
# (tesseract-ocr-lav, ...) as the tests grow.
PIETURA_TEST_PACKAGES=(
    rabbitmq-server
    postgresql
    postgresql-client
    pkg-config
    libssl-dev
    build-essential
    curl
    ca-certificates
    # A real browser for tests/browser.rs (form, dashboard, report).
    chromium
    chromium-driver
    fonts-dejavu-core
    # A real SMTP server for the deadline digest and the e-mail
    # acknowledgements (tests/deadlines.rs, tests/email.rs).
    python3-aiosmtpd
    # A real IMAP server for the e-mail channel (tests/email.rs), and openssl
    # for the private CA its TLS tests make.
    dovecot-imapd
    openssl
    # The DIV stand-in of the e-adrese tests (tests/support/div/): WS-Security
    # and XAdES signatures verified by libxmlsec1, attachments encrypted with
    # cryptography, mutual TLS by Python's ssl (tests/eadrese.rs).
    python3-xmlsec
    python3-lxml
    # xmlsec1 signs the .edoc/.asice containers whose signatures Pietura
    # verifies (tests/edoc_signatures.rs, tests/email.rs).
    xmlsec1
    python3-cryptography
    # A real SMS gateway with its fake SMSC (tests/kannel.rs).
    kannel
    kannel-extras
    # Real Tesseract OCR with Latvian, English and orientation data, the
    # libraries the OCR pool links (tesseract-sys/leptonica-sys build with
    # clang), poppler for PDFs, and what tests/fixtures/scan/render.py draws
    # the test scans with (tests/ocr.rs).
    tesseract-ocr
    tesseract-ocr-lav
    tesseract-ocr-eng
    tesseract-ocr-osd
    libtesseract-dev
    libleptonica-dev
    clang
    libclang-dev
    poppler-utils
    python3-pil
    python3-cairo
    python3-qrcode
    # Mail authenticity and malware (issue 17): a real DNS server publishing
    # the test DKIM key, SPF and DMARC records (tests/mail_authenticity.rs),
    # and a real clamd the tests start on their own socket with an EICAR
    # signature database they write (tests/malware.rs).
    dnsmasq-base
    clamav-daemon
    # A real LDAP directory (OpenLDAP's slapd, started by tests/identity.rs
    # with its own slapd.conf) and ldapadd to load its people and groups.
    slapd
    ldap-utils
    # The archival handover's PDF/A renditions (OCRmyPDF with Ghostscript
    # and Tesseract), and qpdf to check their OutputIntent (tests/archive.rs).
    ocrmypdf
    qpdf
)

# Upper bound for the `cargo test` step (the whole run must stay well under
# 90 minutes on 2 cores).
PIETURA_TEST_TIMEOUT=${PIETURA_TEST_TIMEOUT:-60m}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"
# shellcheck source=scripts/lib/mayan.sh
. "$ROOT/scripts/lib/mayan.sh"
# shellcheck source=scripts/lib/oidc.sh
. "$ROOT/scripts/lib/oidc.sh"

step() { printf '\n==> %s\n' "$*"; }
die() {
    printf 'scripts/test.sh: ERROR: %s\n' "$*" >&2
    exit 1
}

# --- toolchain -------------------------------------------------------------
if [[ -n ${HOME:-} && -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 ||
    die "cargo not found on PATH (install Rust with rustup, or source \$HOME/.cargo/env)"

# --- packages and servers --------------------------------------------------
step "Debian packages"
ensure_packages "${PIETURA_TEST_PACKAGES[@]}"

step "RabbitMQ"
ensure_rabbitmq

step "PostgreSQL"
ensure_postgres

# A real DMS for tests/dms_mayan.rs; each test runs its own copy of the template.
step "Mayan EDMS"
ensure_mayan

# A real OpenID provider (npm oidc-provider) for the desk's sign-in tests.
step "OpenID provider"
ensure_oidc_provider

export PIETURA_TEST_AMQP_URL=${PIETURA_TEST_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
export PIETURA_TEST_DATABASE_URL=${PIETURA_TEST_DATABASE_URL:-postgres://pietura:pietura@127.0.0.1:5432/pietura_test}
# Tesseract: one single-threaded OCR job per core is ~5x faster than letting
# OpenMP oversubscribe 2 cores.
export OMP_THREAD_LIMIT=${OMP_THREAD_LIMIT:-1}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# Incremental compilation only slows a one-shot CI build.
if [[ ${CI:-} == true ]]; then
    export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
fi

# A cargo subcommand that is missing (e.g. a minimal rustup profile) is added
# with rustup when possible.
need_component() {
    local sub=$1 component=$2
    cargo "$sub" --version >/dev/null 2>&1 && return 0
    if command -v rustup >/dev/null 2>&1; then
        rustup component add "$component" </dev/null
    fi
    cargo "$sub" --version >/dev/null 2>&1 ||
        die "'cargo $sub' is not available (rustup component add $component)"
}

printf '\n%s; %s\n' "$(cargo --version)" "$(rustc --version 2>/dev/null || echo 'rustc ?')"

# --- checks ----------------------------------------------------------------
if [[ ${PIETURA_SKIP_LINT:-} == 1 ]]; then
    step "fmt and clippy skipped (PIETURA_SKIP_LINT=1)"
else
    need_component fmt rustfmt
    need_component clippy clippy

    step "cargo fmt --all -- --check"
    cargo fmt --all -- --check

    step "cargo clippy --all-targets --locked -- -D warnings"
    cargo clippy --all-targets --locked -- -D warnings
fi

step "cargo test --all-targets --locked $*"
if [[ -t 1 ]]; then
    # Interactive: no timeout wrapper, so Ctrl-C reaches cargo and the tests.
    cargo test --all-targets --locked "$@" </dev/null
else
    # Unattended (CI): `timeout` runs cargo in its own process group and, on
    # expiry, kills the whole group (test binaries included).
    rc=0
    timeout -k 30s "$PIETURA_TEST_TIMEOUT" cargo test --all-targets --locked "$@" </dev/null || rc=$?
    if ((rc == 124 || rc == 137)); then
        die "cargo test timed out or was killed (rc=$rc, limit $PIETURA_TEST_TIMEOUT, see PIETURA_TEST_TIMEOUT)"
    fi
    exit "$rc"
fi

#!/usr/bin/env bash
# Pietura's main command: the daemon on its embedded defaults (SQLite
# registry and an embedded queue table in ./pietura-data, the form at
# http://127.0.0.1:8080/). Installs the Debian packages the build links
# (Tesseract and Leptonica for the OCR pool, clang for their bindings) when
# they are missing, then `cargo run --release -- run`. Extra arguments go
# to `pietura run` (e.g. `--config pietura.toml`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"

ensure_packages pkg-config libssl-dev build-essential clang libclang-dev \
    libtesseract-dev libleptonica-dev tesseract-ocr-lav tesseract-ocr-eng tesseract-ocr-osd poppler-utils \
    fonts-dejavu-core

if [[ -n ${HOME:-} && -f $HOME/.cargo/env ]]; then
    # shellcheck source=/dev/null
    . "$HOME/.cargo/env"
fi
command -v cargo >/dev/null 2>&1 || {
    echo "scripts/run.sh: cargo not found (install Rust with rustup)" >&2
    exit 1
}
export OMP_THREAD_LIMIT=${OMP_THREAD_LIMIT:-1}
exec cargo run --release --locked -- run "$@"

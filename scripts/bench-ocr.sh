#!/usr/bin/env bash
# The OCR benchmark: pages/minute and CPU-seconds per page through Pietura's
# OCR pool beside the plain `tesseract` command, page after page, on the same
# rendered test scans (tests/fixtures/scan/render.py), in one run.
#
#   scripts/bench-ocr.sh        # 2 rounds over the page images
#   scripts/bench-ocr.sh 5
set -euo pipefail

ROUNDS=${1:-2}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=scripts/lib/services.sh
. "$ROOT/scripts/lib/services.sh"
ensure_packages tesseract-ocr tesseract-ocr-lav tesseract-ocr-eng tesseract-ocr-osd \
    libtesseract-dev libleptonica-dev clang libclang-dev python3-pil python3-cairo python3-qrcode

PAGES=$(mktemp -d /tmp/pietura-bench-ocr.XXXXXX)
trap 'rm -rf "$PAGES"' EXIT
/usr/bin/python3 tests/fixtures/scan/render.py "$PAGES/all" >/dev/null
mkdir -p "$PAGES/pages"
# The letter pages only (no blank, bomb or damaged files).
for f in letter_300.png letter_150.png rotated_180.png rotated_90.png skewed_noisy.jpg; do
    cp "$PAGES/all/$f" "$PAGES/pages/"
done
export OMP_THREAD_LIMIT=1
cargo run --release --locked --quiet -- bench --ocr "$PAGES/pages" --rounds "$ROUNDS"

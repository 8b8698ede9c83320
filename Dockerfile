# syntax=docker/dockerfile:1
# Pietura intake daemon.
#   docker build -t pietura .        (or: docker compose up --build)

# ---- build -------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
# The OCR pool links Debian's Tesseract and Leptonica (bindings made with clang).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libtesseract-dev libleptonica-dev clang libclang-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Whole repo: askama reads templates/ and sqlx embeds migrations/ at compile
# time (see .dockerignore for what is left out).
COPY . .
RUN --mount=type=cache,id=pietura-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=pietura-target,target=/src/target \
    cargo build --release --locked --bin pietura \
 && install -D -m 0755 target/release/pietura /out/pietura \
 && mkdir -p rules channels migrations

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates curl \
      libtesseract5 tesseract-ocr-lav tesseract-ocr-eng tesseract-ocr-osd poppler-utils \
      fonts-dejavu-core ocrmypdf qpdf \
 && rm -rf /var/lib/apt/lists/*
RUN groupadd --system pietura \
 && useradd --system --gid pietura --home-dir /var/lib/pietura --shell /usr/sbin/nologin pietura \
 && install -d -o pietura -g pietura -m 0750 /var/lib/pietura /var/lib/pietura/blobs

COPY --from=builder /out/pietura /usr/local/bin/pietura
COPY --from=builder /src/rules /etc/pietura/rules
COPY --from=builder /src/channels /etc/pietura/channels
# Migrations are embedded in the binary; this copy is for reference only.
COPY --from=builder /src/migrations /usr/share/pietura/migrations

# One single-threaded Tesseract per OCR worker (OpenMP would oversubscribe).
ENV OMP_THREAD_LIMIT=1 \
    PIETURA__RULES__DIR=/etc/pietura/rules \
    PIETURA__CHANNELS__DIR=/etc/pietura/channels \
    PIETURA__BLOBS__DIR=/var/lib/pietura/blobs

USER pietura
WORKDIR /var/lib/pietura
EXPOSE 8080
ENTRYPOINT ["pietura"]
CMD ["run"]

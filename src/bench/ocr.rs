//! `pietura bench --ocr DIR`: pages per minute and CPU-seconds per page
//! through the OCR pool beside the plain `tesseract` command on the same
//! pages, in the same run.
//!
//! The baseline is what a mailroom script would do: one `tesseract IMAGE -
//! -l LANGS` per page, one after another; its CPU is the children's
//! (`getrusage(RUSAGE_CHILDREN)`). The pool reads the same pages with one
//! single-threaded engine per core, each page also checked for orientation,
//! deskewed and, when specked, despeckled; its CPU is this process's
//! (`getrusage(RUSAGE_SELF)`) while it reads, after its engines loaded.
//! CPU-seconds hold when the machine is busy with other work; pages per
//! minute do not.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;

use crate::ocr::{OcrPool, OcrSettings, PageImage};

/// What one run measured.
#[derive(Debug, Clone)]
pub struct OcrReport {
    pub pages: usize,
    pub rounds: usize,
    pub workers: usize,
    pub cli_pages_per_min: f64,
    pub pool_pages_per_min: f64,
    /// User + system CPU-seconds per page.
    pub cli_cpu_per_page: f64,
    pub pool_cpu_per_page: f64,
}

/// User + system CPU-seconds of this process (`RUSAGE_SELF`) or of its
/// children waited for (`RUSAGE_CHILDREN`).
fn cpu_seconds(who: libc::c_int) -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

impl fmt::Display for OcrReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "OCR, {} pages × {} rounds, lav+eng",
            self.pages, self.rounds
        )?;
        writeln!(
            f,
            "  tesseract command, page after page: {:>7.1} pages/min, {:.3} CPU-s/page",
            self.cli_pages_per_min, self.cli_cpu_per_page
        )?;
        writeln!(
            f,
            "  OCR pool, {} workers:                {:>7.1} pages/min, {:.3} CPU-s/page",
            self.workers, self.pool_pages_per_min, self.pool_cpu_per_page
        )?;
        write!(
            f,
            "  pool / command: {:.2}× the pages per minute, {:.2}× the CPU-seconds per page",
            self.pool_pages_per_min / self.cli_pages_per_min,
            self.pool_cpu_per_page / self.cli_cpu_per_page
        )
    }
}

/// The PNG, JPEG and TIFF files in `dir` (one page each is taken).
fn page_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "png" | "jpg" | "jpeg" | "tif" | "tiff"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} holds no PNG, JPEG or TIFF page", dir.display()));
    }
    Ok(files)
}

/// Runs both, `rounds` times over the pages in `dir`.
pub async fn run(dir: &Path, rounds: usize, settings: OcrSettings) -> Result<OcrReport, String> {
    let files = page_files(dir)?;
    let languages = settings.languages.clone();

    let started = Instant::now();
    let cli_cpu = cpu_seconds(libc::RUSAGE_CHILDREN);
    for _ in 0..rounds {
        for file in &files {
            let out = tokio::process::Command::new("tesseract")
                .arg(file)
                .arg("-")
                .args(["-l", &languages])
                .env("OMP_THREAD_LIMIT", "1")
                .output()
                .await
                .map_err(|e| format!("tesseract cannot run ({e}): install tesseract-ocr"))?;
            if !out.status.success() {
                return Err(format!("tesseract failed on {}", file.display()));
            }
        }
    }
    let cli_secs = started.elapsed().as_secs_f64();
    let cli_cpu = cpu_seconds(libc::RUSAGE_CHILDREN) - cli_cpu;

    let pool = Arc::new(OcrPool::start(settings).map_err(|e| e.to_string())?);
    let workers = pool.workers();
    let mut pages = Vec::new();
    for file in &files {
        let bytes = Arc::new(std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?);
        pages.push(PageImage {
            bytes,
            tiff_page: None,
            dpi: None,
            separator_qr: None,
        });
    }
    let jobs: Vec<PageImage> = (0..rounds).flat_map(|_| pages.iter().cloned()).collect();
    let started = Instant::now();
    let pool_cpu = cpu_seconds(libc::RUSAGE_SELF);
    let results: Vec<_> = futures::stream::iter(jobs)
        .map(|page| {
            let pool = pool.clone();
            async move { pool.read(page).await }
        })
        .buffer_unordered(workers * 2)
        .collect()
        .await;
    let pool_secs = started.elapsed().as_secs_f64();
    let pool_cpu = cpu_seconds(libc::RUSAGE_SELF) - pool_cpu;
    if let Some(Err(e)) = results.iter().find(|r| r.is_err()) {
        return Err(format!("the pool failed a page: {e}"));
    }
    let _ = tokio::task::spawn_blocking(move || pool.stop()).await;

    let total = (files.len() * rounds) as f64;
    Ok(OcrReport {
        pages: files.len(),
        rounds,
        workers,
        cli_pages_per_min: total / cli_secs * 60.0,
        pool_pages_per_min: total / pool_secs * 60.0,
        cli_cpu_per_page: cli_cpu / total,
        pool_cpu_per_page: pool_cpu / total,
    })
}

//! `pietura bench --ocr DIR`: pages per minute through the OCR pool beside
//! the plain `tesseract` command on the same pages, in the same run.
//!
//! The baseline is what a mailroom script would do: one `tesseract IMAGE -
//! -l LANGS` per page, one after another. The pool reads the same pages with
//! one single-threaded engine per core, each page also oriented, deskewed
//! and despeckled.

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
            "  tesseract command, page after page: {:>7.1} pages/min",
            self.cli_pages_per_min
        )?;
        writeln!(
            f,
            "  OCR pool, {} workers:                {:>7.1} pages/min",
            self.workers, self.pool_pages_per_min
        )?;
        write!(
            f,
            "  ratio pool / command: {:.2}",
            self.pool_pages_per_min / self.cli_pages_per_min
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
    let results: Vec<_> = futures::stream::iter(jobs)
        .map(|page| {
            let pool = pool.clone();
            async move { pool.read(page).await }
        })
        .buffer_unordered(workers * 2)
        .collect()
        .await;
    let pool_secs = started.elapsed().as_secs_f64();
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
    })
}

//! A scan file taken apart into pages, one at a time (a 200-page PDF never
//! sits in memory as images): PDFs through poppler (`pdfinfo`, `pdftotext`
//! for a page's text layer, `pdftoppm` to rasterise a page without one),
//! multi-page TIFFs counted from their directory chain (libtiff through
//! Leptonica), PNG and JPEG as one page.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::ocr::{self, PageImage};

/// What kind of file a scan is, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanKind {
    Pdf,
    Tiff,
    /// PNG, JPEG or another single image Leptonica reads.
    Image,
}

impl ScanKind {
    pub fn of(bytes: &[u8]) -> ScanKind {
        if bytes.starts_with(b"%PDF") {
            ScanKind::Pdf
        } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
            ScanKind::Tiff
        } else {
            ScanKind::Image
        }
    }

    pub fn content_type(self, bytes: &[u8]) -> &'static str {
        match self {
            ScanKind::Pdf => "application/pdf",
            ScanKind::Tiff => "image/tiff",
            ScanKind::Image if bytes.starts_with(b"\x89PNG") => "image/png",
            ScanKind::Image if bytes.starts_with(b"\xff\xd8") => "image/jpeg",
            ScanKind::Image => "application/octet-stream",
        }
    }
}

/// One page, ready for the OCR pool or already read from a text layer.
#[derive(Debug, Clone)]
pub enum Page {
    /// The PDF page's own text (born-digital or OCR'd by the scanner).
    Text(String),
    Image(PageImage),
}

/// How many pages the file has; an error (for `failed/`) when it cannot be
/// read, or when a PDF page would render at `dpi` to more than `max_pixels`
/// (checked from the page sizes, before anything is rendered).
pub async fn count(
    path: &Path,
    kind: ScanKind,
    bytes: &Arc<Vec<u8>>,
    dpi: u32,
    max_pixels: u64,
) -> Result<u32, String> {
    match kind {
        ScanKind::Image => Ok(1),
        ScanKind::Tiff => {
            // From the directory chain, not by decoding until a page fails:
            // a page no decoder reads is still a page of the letter.
            let n = ocr::leptonica::Pix::tiff_page_count(bytes)
                .ok_or("the TIFF's page directory is damaged: no page can be found")?;
            // Each page's size, from its directory, before anything is decoded.
            for page in 0..n.min(MAX_PAGES_CHECKED) {
                if let Some(h) = ocr::leptonica::Pix::tiff_page_header(bytes, page)
                    && h.pixels() > max_pixels
                {
                    return Err(format!(
                        "page {} is {} × {} pixels, over ocr.max_page_pixels = {max_pixels}",
                        page + 1,
                        h.width,
                        h.height
                    ));
                }
            }
            Ok(n)
        }
        ScanKind::Pdf => {
            let out = run("pdfinfo", &[path.as_os_str()]).await?;
            let text = String::from_utf8_lossy(&out);
            let pages: u32 = text
                .lines()
                .find_map(|l| l.strip_prefix("Pages:"))
                .and_then(|n| n.trim().parse().ok())
                .ok_or_else(|| "pdfinfo names no page count: the PDF is damaged".to_string())?;
            let last = pages.to_string();
            let args = ["-f", "1", "-l", last.as_str()].map(std::ffi::OsStr::new);
            let mut all: Vec<&std::ffi::OsStr> = args.to_vec();
            all.push(path.as_os_str());
            let sizes = run("pdfinfo", &all).await?;
            // "Page    3 size: 595.276 x 841.89 pts (A4)"
            for line in String::from_utf8_lossy(&sizes).lines() {
                let Some((head, size)) = line.split_once(" size:") else {
                    continue;
                };
                let mut dims = size
                    .split_whitespace()
                    .filter_map(|w| w.parse::<f64>().ok());
                let (Some(w), Some(h)) = (dims.next(), dims.next()) else {
                    continue;
                };
                let pixels = w * h * (f64::from(dpi) / 72.0).powi(2);
                if pixels > max_pixels as f64 {
                    return Err(format!(
                        "{} is {w:.0} × {h:.0} pt: at {dpi} dpi over ocr.max_page_pixels = {max_pixels}",
                        head.split_whitespace().collect::<Vec<_>>().join(" ")
                    ));
                }
            }
            Ok(pages)
        }
    }
}

/// Past this many pages a file is refused by `max_pages` anyway.
const MAX_PAGES_CHECKED: u32 = 10_000;

/// Page `n` (from 1).
pub async fn page(
    path: &Path,
    kind: ScanKind,
    bytes: &Arc<Vec<u8>>,
    n: u32,
    dpi: u32,
    separator_qr: Option<Arc<str>>,
) -> Result<Page, String> {
    let image = |bytes: Arc<Vec<u8>>, tiff_page, dpi| {
        Page::Image(PageImage {
            bytes,
            tiff_page,
            dpi,
            separator_qr: separator_qr.clone(),
        })
    };
    match kind {
        ScanKind::Image => Ok(image(bytes.clone(), None, None)),
        ScanKind::Tiff => Ok(image(bytes.clone(), Some(n - 1), None)),
        ScanKind::Pdf => {
            let page = n.to_string();
            let first = ["-f", page.as_str(), "-l", page.as_str()];
            let mut args: Vec<&std::ffi::OsStr> = first.iter().map(|a| a.as_ref()).collect();
            args.extend([
                std::ffi::OsStr::new("-layout"),
                path.as_os_str(),
                std::ffi::OsStr::new("-"),
            ]);
            let text = run("pdftotext", &args).await?;
            let text = String::from_utf8_lossy(&text).replace('\u{c}', "");
            // A scanner's own OCR layer counts only when it holds real text.
            if text.chars().filter(|c| c.is_alphabetic()).count() >= 20 {
                return Ok(Page::Text(text));
            }
            let dpi_text = dpi.to_string();
            let mut args: Vec<&std::ffi::OsStr> = first.iter().map(|a| a.as_ref()).collect();
            for a in ["-r", dpi_text.as_str(), "-gray"] {
                args.push(std::ffi::OsStr::new(a));
            }
            args.push(path.as_os_str());
            let pgm = run("pdftoppm", &args).await?;
            Ok(image(Arc::new(pgm), None, Some(dpi)))
        }
    }
}

/// Page `n` (from 1) as a PNG at most `width` pixels wide, for showing a
/// scan in the browser beside its text. The file was accepted by the scan
/// channel, so its limits were checked then; pixel counts are checked again.
pub async fn preview_png(
    path: &Path,
    bytes: Arc<Vec<u8>>,
    n: u32,
    width: u32,
    max_pixels: u64,
) -> Result<Vec<u8>, String> {
    if n == 0 {
        return Err("pages are counted from 1".into());
    }
    let kind = ScanKind::of(&bytes);
    if kind == ScanKind::Pdf {
        let (page, width) = (n.to_string(), width.to_string());
        let mut argv: Vec<&std::ffi::OsStr> = [
            "-f",
            &page,
            "-l",
            &page,
            "-scale-to-x",
            &width,
            "-scale-to-y",
            "-1",
            "-png",
            "-singlefile",
        ]
        .into_iter()
        .map(std::ffi::OsStr::new)
        .collect();
        argv.push(path.as_os_str());
        return run("pdftoppm", &argv).await;
    }
    tokio::task::spawn_blocking(move || {
        let header = ocr::leptonica::Pix::header(&bytes).ok_or("not an image Leptonica reads")?;
        if header.pixels() > max_pixels {
            return Err(format!(
                "the image has {} pixels, over the limit",
                header.pixels()
            ));
        }
        let pix = match kind {
            ScanKind::Tiff => ocr::leptonica::Pix::decode_tiff_page(&bytes, n - 1),
            _ if n == 1 => ocr::leptonica::Pix::decode(&bytes),
            _ => None,
        }
        .ok_or_else(|| format!("page {n} cannot be read"))?;
        let pix = if pix.width() > width {
            pix.scaled(width as f32 / pix.width() as f32)
                .ok_or("the page cannot be scaled")?
        } else {
            pix
        };
        pix.to_png()
            .ok_or_else(|| "the page cannot be written as PNG".to_string())
    })
    .await
    .map_err(|e| format!("page preview failed: {e}"))?
}

/// Runs a poppler tool (with a time limit) and returns its stdout.
async fn run(tool: &str, args: &[&std::ffi::OsStr]) -> Result<Vec<u8>, String> {
    let child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .map_err(|_| format!("{tool} took over 120 s"))?
        .map_err(|e| format!("{tool} cannot run ({e}): install poppler-utils"))?;
    if !out.status.success() {
        let err: String = String::from_utf8_lossy(&out.stderr)
            .chars()
            .take(300)
            .collect();
        return Err(format!("{tool} cannot read the file: {}", err.trim()));
    }
    Ok(out.stdout)
}

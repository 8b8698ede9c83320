//! OCR of scanned pages with Tesseract, in a bounded pool of single-threaded
//! engines (one per core by default; with `OMP_THREAD_LIMIT=1` that is ~5×
//! faster than letting OpenMP spread one page over the cores).
//!
//! A page goes through: header check (pixel limit, before any decoding) →
//! decode (a TIFF page Leptonica cannot read: the tiff crate) → grey →
//! blank test → orientation and quarter turn (Leptonica's quick test;
//! Tesseract's OSD only when it cannot tell or the reading is weak) →
//! deskew (Leptonica) → median at 250 dpi and more → recognition with the
//! configured languages.
//!
//! - [`leptonica`]: images (decode, header, turns, deskew).
//! - [`tesseract`]: the engine.

pub mod convert;
pub mod leptonica;
pub mod tesseract;

use std::sync::{Arc, Mutex, mpsc};

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use leptonica::Pix;
use tesseract::Engine;

/// Why a page could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OcrError {
    /// The engines cannot start (language data missing…): fix the install.
    #[error("OCR setup: {0}")]
    Setup(String),
    /// The bytes are not an image Leptonica decodes.
    #[error("{0}")]
    Unreadable(String),
    /// Over a configured limit (pixels); refused before decoding.
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Recognition(String),
    /// The pool was stopped.
    #[error("OCR pool stopped")]
    Stopped,
}

/// `[ocr]` of a scan channel.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OcrSettings {
    /// Tesseract languages, `+`-joined.
    pub languages: String,
    /// Tesseract's data folder; default: the installed one.
    pub tessdata: Option<String>,
    /// Engines running at once; 0 = one per core.
    pub workers: usize,
    /// Largest page accepted, in pixels (A4 at 600 dpi is ~35 million).
    pub max_page_pixels: u64,
    /// Share of dark pixels below which a page counts as blank.
    pub blank_ink_ratio: f32,
    /// Lowest OSD confidence for turning a page.
    pub min_orientation_confidence: f32,
}

impl Default for OcrSettings {
    fn default() -> Self {
        Self {
            languages: "lav+eng".into(),
            tessdata: None,
            workers: 0,
            max_page_pixels: 40_000_000,
            blank_ink_ratio: 0.002,
            min_orientation_confidence: 2.0,
        }
    }
}

/// One page to read: an encoded image (PNG, JPEG, PNM, TIFF) and, for a
/// multi-page TIFF, which page.
#[derive(Debug, Clone)]
pub struct PageImage {
    pub bytes: Arc<Vec<u8>>,
    pub tiff_page: Option<u32>,
    /// The scan's resolution when known (PDF renders); else the file's
    /// own, else estimated from the page size.
    pub dpi: Option<u32>,
    /// A QR code content that marks a separator sheet: such a page is not read.
    pub separator_qr: Option<Arc<str>>,
}

/// What OCR made of one page.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PageText {
    pub text: String,
    /// Tesseract's mean word confidence, 0–100 (0 for a blank page).
    pub confidence: i32,
    pub blank: bool,
    /// Share of dark pixels.
    pub ink_ratio: f32,
    /// Clockwise quarter turns applied before reading (0–270 degrees).
    pub rotated_by: u16,
    /// The skew corrected, in degrees.
    pub skew_degrees: f32,
    /// Tesseract's orientation detection was run: Leptonica's quick test
    /// could not tell, or the first reading was weak.
    pub osd: bool,
    pub width: u32,
    pub height: u32,
    /// A separator sheet (its QR code holds [`PageImage::separator_qr`]).
    pub separator: bool,
}

/// Reads `bytes`' header and refuses an image over `max_pixels` before it
/// is decoded (a small file can declare a huge image).
pub fn check_header(bytes: &[u8], max_pixels: u64) -> Result<leptonica::Header, OcrError> {
    let header = Pix::header(bytes).ok_or_else(|| {
        OcrError::Unreadable("not an image Pietura reads (PNG, JPEG, TIFF, PNM), or damaged".into())
    })?;
    within_limit(header, max_pixels)
}

/// The header of page `n` (from 0) of a TIFF, refused over `max_pixels`
/// before the page is decoded.
pub fn check_tiff_page_header(
    bytes: &[u8],
    n: u32,
    max_pixels: u64,
) -> Result<leptonica::Header, OcrError> {
    let header = Pix::tiff_page_header(bytes, n).ok_or_else(|| {
        OcrError::Unreadable(format!(
            "page {} of the TIFF has no directory Pietura can read",
            n + 1
        ))
    })?;
    within_limit(header, max_pixels)
}

fn within_limit(header: leptonica::Header, max_pixels: u64) -> Result<leptonica::Header, OcrError> {
    if header.pixels() > max_pixels {
        return Err(OcrError::TooLarge(format!(
            "the image declares {}×{} pixels, over the limit of {max_pixels} (ocr.max_page_pixels); refused without decoding",
            header.width, header.height
        )));
    }
    Ok(header)
}

/// One worker's engines.
struct Worker {
    ocr: Engine,
    osd: Engine,
}

impl Worker {
    fn read(&mut self, page: &PageImage, s: &OcrSettings) -> Result<PageText, OcrError> {
        let (header, pix) = match page.tiff_page {
            Some(n) => {
                let header = check_tiff_page_header(&page.bytes, n, s.max_page_pixels)?;
                // What Leptonica cannot decode (16-bit grey with alpha…)
                // is read by the tiff crate and handed over as 8-bit grey.
                let pix = match Pix::decode_tiff_page(&page.bytes, n) {
                    Some(pix) => pix,
                    None => convert::tiff_page_grey(&page.bytes, n).map_err(|e| {
                        OcrError::Unreadable(format!("the page cannot be decoded: {e}"))
                    })?,
                };
                (header, pix)
            }
            None => {
                let header = check_header(&page.bytes, s.max_page_pixels)?;
                let pix = Pix::decode(&page.bytes).ok_or_else(|| {
                    OcrError::Unreadable("the image data is damaged and cannot be decoded".into())
                })?;
                (header, pix)
            }
        };
        let declared_dpi = pix.declared_dpi().filter(|d| (70..=1200).contains(d));
        let grey = pix
            .to_grey()
            .ok_or_else(|| OcrError::Unreadable("the image cannot be turned to grey".into()))?;
        drop(pix);
        let ink_ratio = ink_ratio(&grey);
        let mut out = PageText {
            text: String::new(),
            confidence: 0,
            blank: ink_ratio < s.blank_ink_ratio,
            ink_ratio,
            rotated_by: 0,
            skew_degrees: 0.0,
            osd: false,
            width: header.width,
            height: header.height,
            separator: false,
        };
        if out.blank {
            return Ok(out);
        }
        if let Some(wanted) = &page.separator_qr
            && qr_codes(&grey).iter().any(|c| c.trim() == wanted.as_ref())
        {
            out.separator = true;
            return Ok(out);
        }
        let dpi = page
            .dpi
            .or(declared_dpi)
            .unwrap_or_else(|| estimated_dpi(header));
        let mut upright = grey;
        // Orientation: Leptonica's quick test (milliseconds) first;
        // Tesseract's OSD (about half a recognition) only when it cannot tell.
        let turn = match upright.quick_orientation(dpi) {
            Some(turn) => turn,
            None => {
                out.osd = true;
                self.osd_turn(&upright, s)
            }
        };
        if turn != 0
            && let Some(turned) = upright.rotated(turn)
        {
            upright = turned;
            out.rotated_by = u16::from(turn) * 90;
        }
        if let Some((straight, angle, _confidence)) = upright.deskewed() {
            upright = straight;
            out.skew_degrees = angle;
        }
        // Specks cost more than a median costs fine print at 300 dpi; at
        // 150 dpi the median itself blurs letters (measured: 0.1 → 1 %). It
        // pays on clean 300 dpi pages too (letter_300.png: 0.2 % → 0 %
        // character errors), so it is not saved for specked pages only.
        if dpi >= 250
            && let Some(clean) = upright.despeckled()
        {
            upright = clean;
        }
        let (mut text, mut confidence) = self.ocr.recognise(&upright, dpi)?;
        // A weak reading of a page the quick test called upright may be a
        // page it misjudged: OSD decides, and the better reading is kept.
        if !out.osd && weak(&text, confidence) {
            out.osd = true;
            let turn = self.osd_turn(&upright, s);
            if turn != 0
                && let Some(turned) = upright.rotated(turn)
            {
                let (again, again_confidence) = self.ocr.recognise(&turned, dpi)?;
                if again_confidence > confidence {
                    (text, confidence) = (again, again_confidence);
                    out.rotated_by = (out.rotated_by + u16::from(turn) * 90) % 360;
                }
            }
        }
        out.text = text;
        out.confidence = confidence;
        Ok(out)
    }

    /// Tesseract's OSD: the clockwise quarter turns that set the page
    /// upright, when it is sure enough.
    fn osd_turn(&mut self, page: &Pix, s: &OcrSettings) -> u8 {
        self.osd
            .orientation(page)
            .filter(|o| o.confidence >= s.min_orientation_confidence)
            .map_or(0, |o| (o.rotate_by / 90 % 4) as u8)
    }
}

/// A reading too poor to trust its orientation: low confidence, or hardly
/// any letters on a page that has ink.
fn weak(text: &str, confidence: i32) -> bool {
    confidence < 60 || text.chars().filter(|c| c.is_alphabetic()).count() < 20
}

/// The resolution of a page that declares none, assuming A4 (the short
/// side is 8.27 in): what Tesseract is told, and whether to despeckle.
fn estimated_dpi(h: leptonica::Header) -> u32 {
    let short = h.width.min(h.height) as f32;
    ((short / 8.27).round() as u32).clamp(70, 1200)
}

/// The QR codes on a page (read at half size, which a printed separator
/// code survives and which takes a quarter of the time).
fn qr_codes(grey: &Pix) -> Vec<String> {
    let Some(small) = grey.scaled(0.5) else {
        return Vec::new();
    };
    let Some(bytes) = small.grey_bytes() else {
        return Vec::new();
    };
    let (w, h) = (small.width() as usize, small.height() as usize);
    let mut prepared = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| bytes[y * w + x]);
    prepared
        .detect_grids()
        .into_iter()
        .filter_map(|g| g.decode().ok().map(|(_, content)| content))
        .collect()
}

/// Share of pixels clearly darker than the paper (its median grey), on a
/// quarter-size copy: faint specks and scanner noise stay below, light or
/// blurred print does not.
fn ink_ratio(grey: &Pix) -> f32 {
    let small = grey.scaled(0.25);
    let mut bytes = small.as_ref().and_then(Pix::grey_bytes).unwrap_or_default();
    if bytes.is_empty() {
        return 0.0;
    }
    let n = bytes.len();
    let paper = *bytes.select_nth_unstable(n / 2).1;
    let ink = bytes
        .iter()
        .filter(|b| paper.saturating_sub(**b) > 48)
        .count();
    ink as f32 / n as f32
}

type Job = (PageImage, oneshot::Sender<Result<PageText, OcrError>>);

/// A bounded pool of OCR workers, each a thread with its own engines.
pub struct OcrPool {
    jobs: Mutex<Option<mpsc::SyncSender<Job>>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    workers: usize,
}

impl OcrPool {
    /// Starts the workers; fails (naming what to install) when an engine
    /// cannot load its language data.
    pub fn start(settings: OcrSettings) -> Result<OcrPool, OcrError> {
        let workers = match settings.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        // Pages wait here, not in memory of their own: one queued per worker.
        let (tx, rx) = mpsc::sync_channel::<Job>(workers);
        let rx = Arc::new(Mutex::new(rx));
        let settings = Arc::new(settings);
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), OcrError>>();
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let rx = rx.clone();
            let settings = settings.clone();
            let ready = ready_tx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("ocr-{i}"))
                .spawn(move || {
                    let engines = Engine::new(settings.tessdata.as_deref(), &settings.languages)
                        .and_then(|ocr| {
                            Ok((ocr, Engine::new(settings.tessdata.as_deref(), "osd")?))
                        });
                    let mut worker = match engines {
                        Ok((ocr, osd)) => {
                            let _ = ready.send(Ok(()));
                            Worker { ocr, osd }
                        }
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    loop {
                        let job = match rx.lock() {
                            Ok(guard) => guard.recv(),
                            Err(_) => return,
                        };
                        let Ok((page, answer)) = job else { return };
                        // A decoder panicking on one page fails that page, not the thread.
                        let read = crate::supervise::contain(|| worker.read(&page, &settings))
                            .unwrap_or_else(|_| {
                                Err(OcrError::Unreadable(
                                    "the image decoder failed on this page".into(),
                                ))
                            });
                        let _ = answer.send(read);
                    }
                })
                .map_err(|e| OcrError::Setup(format!("cannot start an OCR thread: {e}")))?;
            threads.push(spawned);
        }
        drop(ready_tx);
        for _ in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => {
                    return Err(OcrError::Setup(
                        "an OCR thread stopped while starting".into(),
                    ));
                }
            }
        }
        Ok(OcrPool {
            jobs: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            workers,
        })
    }

    /// How many pages are read at once.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Reads one page; waits for a free worker (back-pressure).
    pub async fn read(&self, page: PageImage) -> Result<PageText, OcrError> {
        let (answer_tx, answer_rx) = oneshot::channel();
        let sender = self
            .jobs
            .lock()
            .map_err(|_| OcrError::Stopped)?
            .clone()
            .ok_or(OcrError::Stopped)?;
        // The queue holds one page per worker; wait for room off the runtime.
        tokio::task::spawn_blocking(move || sender.send((page, answer_tx)))
            .await
            .map_err(|_| OcrError::Stopped)?
            .map_err(|_| OcrError::Stopped)?;
        answer_rx.await.map_err(|_| OcrError::Stopped)?
    }

    /// Stops the workers after the pages already queued.
    pub fn stop(&self) {
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
        if let Ok(mut threads) = self.threads.lock() {
            for t in threads.drain(..) {
                let _ = t.join();
            }
        }
    }
}

impl Drop for OcrPool {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Character error rate of `recognised` against `truth`: Levenshtein
/// distance over characters / characters in `truth`, after collapsing
/// whitespace (used by the tests and the benchmark).
pub fn character_error_rate(recognised: &str, truth: &str) -> f64 {
    let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (a, b): (Vec<char>, Vec<char>) = (
        norm(recognised).chars().collect(),
        norm(truth).chars().collect(),
    );
    if b.is_empty() {
        return if a.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()] as f64 / b.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn character_error_rate_counts_edits_over_the_truth() {
        assert_eq!(character_error_rate("Būvatļauja", "Būvatļauja"), 0.0);
        assert!((character_error_rate("Buvatlauja", "Būvatļauja") - 0.2).abs() < 1e-9);
        assert_eq!(character_error_rate("a  b\n c", "a b c"), 0.0);
        assert_eq!(character_error_rate("", ""), 0.0);
    }

    /// A PNG chunk with its CRC (RFC 2083).
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut crc = 0xffff_ffff_u32;
        for b in kind.iter().chain(data) {
            crc ^= u32::from(*b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&(!crc).to_be_bytes());
        out
    }

    #[test]
    fn a_declared_giant_is_refused_before_decoding() {
        // A 60-byte PNG declaring 40000 × 40000 grey pixels.
        let mut ihdr = 40_000_u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&40_000_u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &ihdr));
        png.extend(chunk(b"IEND", &[]));
        match check_header(&png, 40_000_000) {
            Err(OcrError::TooLarge(m)) => assert!(m.contains("40000×40000"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            check_header(b"not an image", 1),
            Err(OcrError::Unreadable(_))
        ));
    }
}

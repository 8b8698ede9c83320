//! PDF printing, written once: the answer letters sent by post and the
//! receipts handed out at the counter are laid out here, on `printpdf`, with
//! one embedded TrueType font (DejaVuSans by default, `[print] font`) so that
//! Latvian diacritics print and come back out of the PDF's text (`pdftotext`).
//!
//! The layout is a short list of blocks on A4: the municipality's header
//! (first page), the address block placed for a window envelope (DIN 5008
//! form B, which a C5/6 or DL window shows when the sheet is folded in
//! three), headings and wrapped paragraphs flowing over as many pages as they
//! need, and a footer with the page number on every page.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use printpdf::{
    Mm, Op, ParsedFont, PdfDocument, PdfFontHandle, PdfPage, PdfSaveOptions, Point, Pt, TextItem,
};
use serde::Deserialize;

/// Debian's `fonts-dejavu-core` (installed by scripts/test.sh and the image).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// `[print]` of the daemon's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrintSettings {
    /// A TrueType font holding the Latvian letters, embedded in every PDF.
    pub font: PathBuf,
    /// The municipality's letterhead, one line each (the first printed larger),
    /// at the top of a letter's or receipt's first page.
    pub header: Vec<String>,
    /// The sender line above the address in the envelope window
    /// (e.g. "Pašvaldība, Rīgas iela 1, Valmiera, LV-4201").
    pub return_address: String,
}

impl Default for PrintSettings {
    fn default() -> Self {
        Self {
            font: PathBuf::from(DEFAULT_FONT),
            header: Vec::new(),
            return_address: String::new(),
        }
    }
}

impl PrintSettings {
    /// Problems as (`print.key`, message), for the configuration check.
    pub fn issues(&self) -> Vec<(String, String)> {
        match PrintFont::load(&self.font) {
            Ok(_) => Vec::new(),
            Err(e) => vec![("print.font".into(), e.to_string())],
        }
    }
}

/// Why a font cannot be used (both permanent: the configuration names it).
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("font {path} cannot be read: {source} (install fonts-dejavu-core or set print.font)")]
    FontRead {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("font {path} is not a TrueType/OpenType font")]
    FontParse { path: PathBuf },
}

/// The one font every printout embeds, loaded once and shared.
#[derive(Debug, Clone)]
pub struct PrintFont {
    font: Arc<ParsedFont>,
}

impl PrintFont {
    pub fn load(path: &Path) -> Result<Self, PrintError> {
        let bytes = std::fs::read(path).map_err(|source| PrintError::FontRead {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes).ok_or_else(|| PrintError::FontParse {
            path: path.to_path_buf(),
        })
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let font = ParsedFont::from_bytes(bytes, 0, &mut Vec::new())?;
        // A font without the letters of "ā" or "a" would print blanks.
        ['a', 'ā']
            .iter()
            .all(|c| font.lookup_glyph_index(u32::from(*c)).is_some())
            .then(|| Self {
                font: Arc::new(font),
            })
    }

    /// The advance width of `text` at `size` points, in millimetres.
    fn width_mm(&self, text: &str, size: f32) -> f32 {
        let per_em = f32::from(self.font.units_per_em.max(1));
        let units: f32 = text
            .chars()
            .map(|c| {
                self.font
                    .lookup_glyph_index(u32::from(c))
                    .and_then(|g| self.font.get_glyph_width(g))
                    .map_or(per_em / 2.0, f32::from)
            })
            .sum();
        units / per_em * size * MM_PER_PT
    }
}

const MM_PER_PT: f32 = 25.4 / 72.0;
const PAGE_W: f32 = 210.0;
const PAGE_H: f32 = 297.0;
const LEFT: f32 = 25.0;
const RIGHT: f32 = 20.0;
const TOP: f32 = 15.0;
/// Body text stops here (mm from the top); the footer sits below.
const BODY_BOTTOM: f32 = 272.0;
const FOOTER_AT: f32 = 285.0;
/// DIN 5008 form B: the address field starts 45 mm from the top, 20 mm from
/// the left edge (text 5 mm further in); its sender line sits in the first
/// 17.7 mm, the address in the 27.3 mm below; the text starts at 98.46 mm.
const WINDOW_TOP: f32 = 45.0;
const WINDOW_LEFT: f32 = 25.0;
const WINDOW_ADDRESS_TOP: f32 = WINDOW_TOP + 17.7;
const WINDOW_BOTTOM: f32 = 98.46;
const BODY_SIZE: f32 = 11.0;
const HEADING_SIZE: f32 = 13.0;

#[derive(Debug, Clone)]
enum Block {
    Heading(String),
    Paragraph(String),
    Space(f32),
}

/// A document being laid out: [`Printout::render`] gives the PDF's bytes.
#[derive(Debug, Clone)]
pub struct Printout {
    font: PrintFont,
    title: String,
    header: Vec<String>,
    window: Option<(String, Vec<String>)>,
    blocks: Vec<Block>,
    footer: String,
}

impl Printout {
    pub fn new(font: &PrintFont, title: &str) -> Self {
        Self {
            font: font.clone(),
            title: title.to_string(),
            header: Vec::new(),
            window: None,
            blocks: Vec::new(),
            footer: String::new(),
        }
    }

    /// The letterhead at the top of the first page (first line larger).
    pub fn header(&mut self, lines: &[String]) -> &mut Self {
        self.header = lines.to_vec();
        self
    }

    /// The recipient's address placed for a window envelope (DIN 5008 form B),
    /// with the small sender line above it; the text starts below the window.
    pub fn address_window(&mut self, return_line: &str, lines: &[String]) -> &mut Self {
        self.window = Some((return_line.to_string(), lines.to_vec()));
        self
    }

    pub fn heading(&mut self, text: &str) -> &mut Self {
        self.blocks.push(Block::Heading(text.to_string()));
        self
    }

    /// Text wrapped to the page's width; each `\n` starts a new line and an
    /// empty line leaves a gap. Flows onto further pages as needed.
    pub fn paragraph(&mut self, text: &str) -> &mut Self {
        self.blocks.push(Block::Paragraph(text.to_string()));
        self
    }

    /// Vertical space in millimetres.
    pub fn space(&mut self, mm: f32) -> &mut Self {
        self.blocks.push(Block::Space(mm));
        self
    }

    /// A line at the bottom of every page, followed by "page/pages".
    pub fn footer(&mut self, text: &str) -> &mut Self {
        self.footer = text.to_string();
        self
    }

    /// Lays the blocks out and returns the PDF.
    pub fn render(&self) -> Vec<u8> {
        let mut doc = PdfDocument::new(&self.title);
        let font_id = doc.add_font(&self.font.font);
        let mut pages = vec![Vec::new()];
        let mut y = TOP;
        for (i, line) in self.header.iter().enumerate() {
            let size = if i == 0 { HEADING_SIZE } else { 9.0 };
            y += line_height(size);
            push_text(&mut pages, &font_id, size, LEFT, y, line);
        }
        y += 6.0;
        if let Some((sender, address)) = &self.window {
            if !sender.is_empty() {
                push_text(
                    &mut pages,
                    &font_id,
                    7.0,
                    WINDOW_LEFT,
                    WINDOW_TOP + 12.0,
                    sender,
                );
            }
            let mut ay = WINDOW_ADDRESS_TOP;
            for line in address.iter().take(6) {
                ay += line_height(BODY_SIZE);
                push_text(&mut pages, &font_id, BODY_SIZE, WINDOW_LEFT, ay, line);
            }
            y = y.max(WINDOW_BOTTOM);
        }
        let width = PAGE_W - LEFT - RIGHT;
        for block in &self.blocks {
            let (size, text) = match block {
                Block::Space(mm) => {
                    y += mm;
                    continue;
                }
                Block::Heading(t) => {
                    y += 2.0;
                    (HEADING_SIZE, t.as_str())
                }
                Block::Paragraph(t) => (BODY_SIZE, t.as_str()),
            };
            for source_line in text.lines() {
                let wrapped = wrap(&self.font, source_line, size, width);
                if wrapped.is_empty() {
                    y += line_height(size) / 2.0;
                }
                for line in wrapped {
                    if y + line_height(size) > BODY_BOTTOM {
                        pages.push(Vec::new());
                        y = TOP + 5.0;
                    }
                    y += line_height(size);
                    push_text(&mut pages, &font_id, size, LEFT, y, &line);
                }
            }
            y += line_height(size) / 2.0;
        }
        let count = pages.len();
        let pdf_pages = pages
            .into_iter()
            .enumerate()
            .map(|(i, mut ops)| {
                let foot = format!("{}    {}/{count}", self.footer, i + 1);
                push_ops(&mut ops, &font_id, 8.0, LEFT, FOOTER_AT, foot.trim_start());
                PdfPage::new(Mm(PAGE_W), Mm(PAGE_H), ops)
            })
            .collect();
        doc.with_pages(pdf_pages)
            .save(&PdfSaveOptions::default(), &mut Vec::new())
    }
}

fn line_height(size: f32) -> f32 {
    size * 1.35 * MM_PER_PT
}

fn push_text(pages: &mut [Vec<Op>], font: &printpdf::FontId, size: f32, x: f32, y: f32, t: &str) {
    if let Some(ops) = pages.last_mut() {
        push_ops(ops, font, size, x, y, t);
    }
}

/// One line of text whose baseline is `y` mm from the top of the page.
fn push_ops(ops: &mut Vec<Op>, font: &printpdf::FontId, size: f32, x: f32, y: f32, t: &str) {
    ops.extend([
        Op::StartTextSection,
        Op::SetFont {
            font: PdfFontHandle::External(font.clone()),
            size: Pt(size),
        },
        Op::SetTextCursor {
            pos: Point {
                x: Mm(x).into(),
                y: Mm(PAGE_H - y).into(),
            },
        },
        Op::ShowText {
            items: vec![TextItem::Text(t.to_string())],
        },
        Op::EndTextSection,
    ]);
}

/// Greedy word wrap; a word wider than the line is cut between characters.
fn wrap(font: &PrintFont, text: &str, size: f32, width: f32) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for word in text.split_whitespace() {
        let candidate = if current.is_empty() {
            word.to_string()
        } else {
            format!("{current} {word}")
        };
        if font.width_mm(&candidate, size) <= width {
            current = candidate;
            continue;
        }
        if !current.is_empty() {
            lines.push(std::mem::take(&mut current));
        }
        for c in word.chars() {
            current.push(c);
            if font.width_mm(&current, size) > width {
                current.pop();
                lines.push(std::mem::take(&mut current));
                current.push(c);
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn font() -> PrintFont {
        PrintFont::load(Path::new(DEFAULT_FONT))
            .expect("DejaVuSans: install fonts-dejavu-core (scripts/test.sh does)")
    }

    /// `pdftotext -layout` of a PDF, and its page count from `pdfinfo`.
    fn text_of(pdf: &[u8]) -> (String, usize) {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.pdf");
        std::fs::write(&path, pdf).expect("write pdf");
        let text = std::process::Command::new("pdftotext")
            .arg("-layout")
            .arg(&path)
            .arg("-")
            .output()
            .expect("pdftotext: install poppler-utils (scripts/test.sh does)");
        assert!(text.status.success(), "pdftotext failed");
        let info = std::process::Command::new("pdfinfo")
            .arg(&path)
            .output()
            .expect("pdfinfo: install poppler-utils");
        let info = String::from_utf8_lossy(&info.stdout).to_string();
        let pages = info
            .lines()
            .find_map(|l| l.strip_prefix("Pages:"))
            .and_then(|n| n.trim().parse().ok())
            .expect("pdfinfo names the page count");
        (String::from_utf8_lossy(&text.stdout).to_string(), pages)
    }

    #[test]
    fn latvian_text_header_window_footer_and_pages_come_back_out() {
        let font = font();
        let long =
            "Ļoti garš teikums par ūdensvada pieslēgumu un ķēdes ģenerāļa čūsku. ".repeat(120);
        let mut p = Printout::new(&font, "Atbilde");
        p.header(&[
            "Ādažu novada pašvaldība".into(),
            "Gaujas iela 33A, Ādaži".into(),
        ])
        .address_window(
            "Ādažu novada pašvaldība, Gaujas iela 33A",
            &[
                "Jānis Bērziņš".into(),
                "Ēdoles iela 7-12".into(),
                "Rīga, LV-1013".into(),
            ],
        )
        .heading("Nr. IZ-2026/7, 2026-12-01")
        .paragraph(&long)
        .footer("Pietura");
        let (text, pages) = text_of(&p.render());
        for needle in [
            "Ādažu novada pašvaldība",
            "Jānis Bērziņš",
            "Ēdoles iela 7-12",
            "Rīga, LV-1013",
            "Nr. IZ-2026/7",
            "ķēdes ģenerāļa čūsku",
            "Pietura",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from:\n{text}");
        }
        assert!(
            pages >= 2,
            "the long text flows onto a second page ({pages})"
        );
        assert!(text.contains(&format!("1/{pages}")) && text.contains(&format!("{pages}/{pages}")));
        // Wrapped: no line of the body is wider than the page allows.
        let widest = text
            .lines()
            .map(|l| l.trim().chars().count())
            .max()
            .unwrap_or(0);
        assert!(widest < 120, "lines wrapped ({widest} characters)");
    }

    #[test]
    fn wrap_keeps_words_and_cuts_only_what_cannot_fit() {
        let font = font();
        let lines = wrap(&font, "viens divi trīs četri pieci", 11.0, 25.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.join(" "), "viens divi trīs četri pieci");
        let cut = wrap(&font, &"ā".repeat(200), 11.0, 50.0);
        assert!(cut.len() > 1 && cut.iter().all(|l| font.width_mm(l, 11.0) <= 50.0));
        assert_eq!(cut.concat(), "ā".repeat(200));
    }

    #[test]
    fn a_missing_font_is_a_config_problem_at_print_font() {
        let settings = PrintSettings {
            font: PathBuf::from("/nonexistent/font.ttf"),
            ..PrintSettings::default()
        };
        let issues = settings.issues();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, "print.font");
        assert!(PrintSettings::default().issues().is_empty());
    }
}

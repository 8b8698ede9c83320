//! OCR with real Tesseract 5 (`lav+eng`, OSD) on scans the test renders
//! (`tests/fixtures/scan/render.py`, Latvian letters with their ground
//! truth): accuracy on clean pages, turned and skewed pages set right,
//! blank and illegible pages told apart, bombs and damaged files refused.

mod support;

use std::sync::{Arc, OnceLock};

use pietura::ocr::{self, OcrError, OcrPool, OcrSettings, PageImage, PageText};

fn bytes(name: &str) -> Arc<Vec<u8>> {
    let path = support::scan_fixtures().join(name);
    Arc::new(std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {}: {e}", path.display())))
}

fn truth(stem: &str, page: u32) -> String {
    let path = support::scan_fixtures().join(format!("{stem}.p{page}.gt.txt"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("ground truth {}: {e}", path.display()))
}

fn pool() -> &'static OcrPool {
    static POOL: OnceLock<OcrPool> = OnceLock::new();
    POOL.get_or_init(|| {
        OcrPool::start(OcrSettings::default()).unwrap_or_else(|e| {
            panic!("{e} (scripts/test.sh installs tesseract-ocr-lav, -eng, -osd)")
        })
    })
}

async fn read(name: &str) -> Result<PageText, OcrError> {
    pool()
        .read(PageImage {
            bytes: bytes(name),
            tiff_page: None,
            dpi: None,
            separator_qr: None,
        })
        .await
}

fn cer(page: &PageText, stem: &str, n: u32) -> f64 {
    ocr::character_error_rate(&page.text, &truth(stem, n))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_letter_is_read_with_at_most_two_percent_character_errors() {
    let page = read("letter_300.png").await.expect("read");
    let rate = cer(&page, "letter_300", 1);
    eprintln!(
        "letter_300.png: CER {:.2} %, confidence {}",
        rate * 100.0,
        page.confidence
    );
    assert!(rate <= 0.02, "CER {rate} > 2 %:\n{}", page.text);
    assert!(page.text.contains("būvatļauj"), "{}", page.text);
    assert!(!page.blank && page.rotated_by == 0);
    assert!(page.confidence >= 80, "{}", page.confidence);
    assert!(!page.osd, "an upright page needs no OSD");

    let page = read("letter_150.png").await.expect("read");
    let rate = cer(&page, "letter_150", 1);
    eprintln!(
        "letter_150.png: CER {:.2} %, confidence {}",
        rate * 100.0,
        page.confidence
    );
    assert!(rate <= 0.02, "CER {rate} > 2 % at 150 dpi:\n{}", page.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn turned_and_skewed_pages_are_set_right_before_reading() {
    let page = read("rotated_180.png").await.expect("read");
    assert_eq!(page.rotated_by, 180, "{page:?}");
    assert!(!page.osd, "Leptonica's quick test is sure of this one");
    assert!(cer(&page, "rotated_180", 1) <= 0.03, "{page:?}");

    eprintln!(
        "rotated_180.png: CER {:.2} %",
        cer(&page, "rotated_180", 1) * 100.0
    );
    let page = read("rotated_90.png").await.expect("read");
    eprintln!(
        "rotated_90.png: CER {:.2} %",
        cer(&page, "rotated_90", 1) * 100.0
    );
    assert!(matches!(page.rotated_by, 90 | 270), "{page:?}");
    assert!(!page.osd, "nor of this one");
    assert!(cer(&page, "rotated_90", 1) <= 0.03, "{}", page.text);

    let page = read("skewed_noisy.jpg").await.expect("read");
    eprintln!(
        "skewed_noisy.jpg: skew {:.2}°, CER {:.2} %",
        page.skew_degrees,
        cer(&page, "skewed_noisy", 1) * 100.0
    );
    assert!(
        (1.5..=3.5).contains(&page.skew_degrees.abs()),
        "skew found: {}",
        page.skew_degrees
    );
    assert!(cer(&page, "skewed_noisy", 1) <= 0.05, "{}", page.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_of_a_multipage_tiff_is_read() {
    let tiff = bytes("multipage.tif");
    for n in 0..3 {
        let page = pool()
            .read(PageImage {
                bytes: tiff.clone(),
                tiff_page: Some(n),
                dpi: None,
                separator_qr: None,
            })
            .await
            .expect("read");
        let rate = cer(&page, "multipage", n + 1);
        assert!(rate <= 0.03, "page {}: CER {rate}:\n{}", n + 1, page.text);
    }
    let past = pool()
        .read(PageImage {
            bytes: tiff,
            tiff_page: Some(3),
            dpi: None,
            separator_qr: None,
        })
        .await;
    assert!(matches!(past, Err(OcrError::Unreadable(_))), "{past:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tiff_pages_in_layouts_leptonica_cannot_decode_are_read_too() {
    // 16-bit grey, 16-bit grey with alpha (Leptonica refuses it), 8-bit
    // grey with alpha, CMYK, a palette, 16-bit RGBA: letter A on each.
    let tiff = bytes("odd_pages.tif");
    assert_eq!(
        ocr::leptonica::Pix::tiff_page_count(&tiff),
        Some(6),
        "counted from the directory"
    );
    assert!(
        ocr::leptonica::Pix::decode_tiff_page(&tiff, 1).is_none(),
        "page 2 is one Leptonica cannot decode; the test proves nothing otherwise"
    );
    for n in 0..6 {
        let page = pool()
            .read(PageImage {
                bytes: tiff.clone(),
                tiff_page: Some(n),
                dpi: None,
                separator_qr: None,
            })
            .await
            .unwrap_or_else(|e| panic!("page {}: {e}", n + 1));
        let rate = cer(&page, "odd_pages", n + 1);
        eprintln!("odd_pages.tif page {}: CER {:.2} %", n + 1, rate * 100.0);
        assert!(rate <= 0.02, "page {}: CER {rate}:\n{}", n + 1, page.text);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_letter_signed_only_at_the_bottom_names_its_signer() {
    use pietura::channels::scan::extract::extract;
    let page = read("signed_bottom.png").await.expect("read");
    let facts = extract(&page.text);
    let signer = facts.signer.expect("the signature is found");
    assert_eq!(signer.value, "Mārtiņš Zariņš", "{}", page.text);
    let sender = facts.sender_name.expect("the sender, from the signature");
    assert_eq!(sender.value, "Mārtiņš Zariņš");
    assert!(sender.confidence >= 0.7, "{}", sender.confidence);
    // A letter with its sender's block on top and the same name signed.
    let page = read("letter_300.png").await.expect("read");
    let sender = extract(&page.text).sender_name.expect("sender");
    assert_eq!(sender.value, "Anna Bērziņa");
    assert!(sender.confidence >= 0.9, "{}", sender.confidence);
}

#[tokio::test(flavor = "multi_thread")]
async fn blank_and_illegible_pages_are_told_apart_from_letters() {
    let blank = read("blank.png").await.expect("read");
    assert!(blank.blank && blank.text.is_empty(), "{blank:?}");
    let poor = read("low_quality.png").await.expect("read");
    let good = read("letter_300.png").await.expect("read");
    eprintln!(
        "low_quality.png: confidence {}, letter_300: {}",
        poor.confidence, good.confidence
    );
    assert!(!poor.blank);
    assert!(poor.osd, "no quick answer on a blurred page: OSD decides");
    assert!(
        poor.confidence + 15 < good.confidence,
        "poor {} vs good {}",
        poor.confidence,
        good.confidence
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decompression_bomb_and_damaged_files_are_refused_with_a_reason() {
    let bomb = read("bomb.png").await;
    assert!(
        matches!(bomb, Err(OcrError::TooLarge(ref m)) if m.contains("ocr.max_page_pixels")),
        "{bomb:?}"
    );
    let broken = read("corrupt.png").await;
    assert!(matches!(broken, Err(OcrError::Unreadable(_))), "{broken:?}");
    // The pool still works afterwards.
    assert!(!read("letter_300.png").await.expect("read").text.is_empty());
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    let be = |at: usize| u32::from_be_bytes([png[at], png[at + 1], png[at + 2], png[at + 3]]);
    (be(16), be(20))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_desk_shows_pdf_tiff_and_image_pages_as_small_pngs() {
    use pietura::channels::scan::pages::preview_png;
    let preview = |name: &'static str, page: u32| async move {
        let path = support::scan_fixtures().join(name);
        preview_png(&path, bytes(name), page, 800, 40_000_000).await
    };
    let (w, h) = png_size(&preview("image_only.pdf", 2).await.expect("PDF page 2"));
    assert_eq!(w, 800, "scaled to the width asked for");
    assert!(h > w, "an A4 page stays upright: {w}×{h}");
    let (w, _) = png_size(&preview("multipage.tif", 3).await.expect("TIFF page 3"));
    assert!(w <= 800, "{w}");
    let (w, _) = png_size(&preview("letter_300.png", 1).await.expect("a single image"));
    assert!(w <= 800, "{w}");
    for (name, page) in [
        ("letter_300.png", 2),
        ("multipage.tif", 9),
        ("letter_300.png", 0),
    ] {
        assert!(
            preview(name, page).await.is_err(),
            "{name} page {page} does not exist"
        );
    }
    let bomb = preview("bomb.png", 1)
        .await
        .expect_err("a decompression bomb");
    assert!(bomb.contains("pixels"), "{bomb}");
}

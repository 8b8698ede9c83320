//! The few Leptonica calls OCR needs, behind a safe owned [`Pix`]: reading
//! an image's header before decoding it (so a decompression bomb is refused
//! before any memory is taken), decoding PNG/JPEG/PNM and each page of a
//! TIFF, and the page corrections (quarter turns, deskew, 8-bit grey).

use std::os::raw::c_int;

use leptonica_sys as lept;

/// An image Leptonica decoded; destroyed when dropped.
#[derive(Debug)]
pub struct Pix(*mut lept::PIX);

// A Pix is plain memory owned by this value; Leptonica keeps no thread state.
unsafe impl Send for Pix {}

impl Drop for Pix {
    fn drop(&mut self) {
        // SAFETY: self.0 came from Leptonica, is non-null and owned here.
        unsafe { lept::pixDestroy(&mut self.0) }
    }
}

/// What an image's header declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    /// Leptonica's `IFF_*` format code (TIFF variants are 4–9, 18).
    pub format: i32,
}

impl Header {
    /// Pixels the decoded image would have.
    pub fn pixels(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// True for every TIFF variant Leptonica knows.
    pub fn is_tiff(&self) -> bool {
        matches!(self.format, 4..=9 | 18)
    }
}

/// Stops Leptonica printing its own messages to stderr: every failure is
/// turned into an error naming the file instead. Process-wide, idempotent.
pub fn quiet() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    // SAFETY: setMsgSeverity only stores an integer.
    ONCE.call_once(|| unsafe {
        lept::setMsgSeverity(lept::L_SEVERITY_NONE as c_int);
    });
}

impl Pix {
    fn own(p: *mut lept::PIX) -> Option<Pix> {
        (!p.is_null()).then_some(Pix(p))
    }

    /// Reads an image's header without decoding its pixels; none when the
    /// bytes are no image Leptonica reads.
    pub fn header(bytes: &[u8]) -> Option<Header> {
        quiet();
        let (mut format, mut w, mut h, mut bps, mut spp, mut cmap): (
            c_int,
            c_int,
            c_int,
            c_int,
            c_int,
            c_int,
        ) = (0, 0, 0, 0, 0, 0);
        // SAFETY: the slice is valid for its length; the out-pointers are locals.
        let failed = unsafe {
            lept::pixReadHeaderMem(
                bytes.as_ptr(),
                bytes.len(),
                &mut format,
                &mut w,
                &mut h,
                &mut bps,
                &mut spp,
                &mut cmap,
            )
        };
        (failed == 0 && w > 0 && h > 0).then_some(Header {
            width: w as u32,
            height: h as u32,
            format,
        })
    }

    /// Decodes a PNG, JPEG, PNM or (first page of a) TIFF.
    pub fn decode(bytes: &[u8]) -> Option<Pix> {
        quiet();
        // SAFETY: the slice is valid for its length; Leptonica copies what it keeps.
        Self::own(unsafe { lept::pixReadMem(bytes.as_ptr(), bytes.len()) })
    }

    /// How many pages (directories) a TIFF has, counted by libtiff from
    /// its directory chain without decoding any page; none when the bytes
    /// are no TIFF.
    pub fn tiff_page_count(bytes: &[u8]) -> Option<u32> {
        quiet();
        // SAFETY: the slice outlives the stream, which is closed here; the
        // count is written to a local.
        unsafe {
            let fp = lept::fopenReadFromMemory(bytes.as_ptr(), bytes.len());
            if fp.is_null() {
                return None;
            }
            let mut n: c_int = 0;
            let failed = lept::tiffGetCount(fp, &mut n);
            lept::fclose(fp);
            (failed == 0 && n > 0).then_some(n as u32)
        }
    }

    /// What page `n` (from 0) of a TIFF declares, read from its directory
    /// without decoding it.
    pub fn tiff_page_header(bytes: &[u8], n: u32) -> Option<Header> {
        quiet();
        let mut v: [c_int; 7] = [0; 7];
        let [w, h, bps, spp, res, cmap, format] = &mut v;
        // SAFETY: the slice is valid for its length; the out-pointers are locals.
        let failed = unsafe {
            lept::readHeaderMemTiff(
                bytes.as_ptr(),
                bytes.len(),
                n as c_int,
                w,
                h,
                bps,
                spp,
                res,
                cmap,
                format,
            )
        };
        (failed == 0 && *w > 0 && *h > 0).then_some(Header {
            width: *w as u32,
            height: *h as u32,
            format: *format,
        })
    }

    /// An 8-bit grey image from `grey` (`width` × `height` bytes, row by
    /// row), e.g. a page another decoder read.
    pub fn from_grey(width: u32, height: u32, grey: &[u8], dpi: Option<u32>) -> Option<Pix> {
        let (w, h) = (width as usize, height as usize);
        if w == 0 || h == 0 || grey.len() != w.checked_mul(h)? {
            return None;
        }
        // SAFETY: pixCreate has no preconditions; a null result is checked.
        let pix = Self::own(unsafe { lept::pixCreate(width as c_int, height as c_int, 8) })?;
        // SAFETY: a new 8-bit Pix holds h rows of wpl 32-bit words, zeroed.
        let (data, wpl) = unsafe { (lept::pixGetData(pix.0), lept::pixGetWpl(pix.0) as usize) };
        if data.is_null() || wpl * 4 < w {
            return None;
        }
        for (y, row) in grey.chunks_exact(w).enumerate() {
            // SAFETY: row y lies within the h × wpl words of the image.
            let words = unsafe { std::slice::from_raw_parts_mut(data.add(y * wpl), wpl) };
            for (x, v) in row.iter().enumerate() {
                // Byte 0 of a row goes in the most significant bits of word 0.
                words[x / 4] |= u32::from(*v) << (24 - 8 * (x % 4));
            }
        }
        if let Some(dpi) = dpi {
            // SAFETY: pix is live.
            unsafe { lept::pixSetResolution(pix.0, dpi as c_int, dpi as c_int) };
        }
        Some(pix)
    }

    /// Decodes page `n` (from 0) of a TIFF; none past the last page.
    pub fn decode_tiff_page(bytes: &[u8], n: u32) -> Option<Pix> {
        // SAFETY: as for decode.
        Self::own(unsafe { lept::pixReadMemTiff(bytes.as_ptr(), bytes.len(), n as c_int) })
    }

    pub fn width(&self) -> u32 {
        // SAFETY: self.0 is a live Pix.
        unsafe { lept::pixGetWidth(self.0) as u32 }
    }

    pub fn height(&self) -> u32 {
        // SAFETY: self.0 is a live Pix.
        unsafe { lept::pixGetHeight(self.0) as u32 }
    }

    /// The image as 8-bit grey (colour and 1-bit scans alike).
    pub fn to_grey(&self) -> Option<Pix> {
        // SAFETY: self.0 is live; the result is a new Pix (or a clone) we own.
        Self::own(unsafe { lept::pixConvertTo8(self.0, 0) })
    }

    /// Turned by `quarters` × 90° clockwise.
    pub fn rotated(&self, quarters: u8) -> Option<Pix> {
        // SAFETY: self.0 is live; the result is a new Pix we own.
        Self::own(unsafe { lept::pixRotateOrth(self.0, c_int::from(quarters % 4)) })
    }

    /// Straightened, with the angle found (degrees) and Leptonica's
    /// confidence in it; the page unchanged (angle 0) when no skew is found.
    pub fn deskewed(&self) -> Option<(Pix, f32, f32)> {
        let (mut angle, mut conf) = (0.0_f32, 0.0_f32);
        // SAFETY: self.0 is live; the result is a new Pix (or a copy) we own.
        let p = unsafe { lept::pixFindSkewAndDeskew(self.0, 0, &mut angle, &mut conf) };
        Self::own(p).map(|p| (p, angle, conf))
    }

    /// Leptonica's quick orientation test for Latin text (ascenders against
    /// descenders on a 1-bit copy near 150 dpi, a few milliseconds): the
    /// clockwise quarter turns that set the page upright, or none when it
    /// cannot tell (little text, poor print, another script).
    pub fn quick_orientation(&self, dpi: u32) -> Option<u8> {
        let small;
        let page = if dpi >= 225 {
            small = self.scaled(150.0 / dpi as f32)?;
            &small
        } else {
            self
        };
        // SAFETY: page is live; the result is a new 1-bit Pix we own.
        let bits = Self::own(unsafe { lept::pixConvertTo1(page.0, 128) })?;
        let (mut up, mut left) = (0.0_f32, 0.0_f32);
        let mut decision: c_int = 0;
        // SAFETY: bits is live; the out-pointers are locals. Zeros ask for
        // Leptonica's default counts and thresholds.
        let failed = unsafe {
            lept::pixOrientDetect(bits.0, &mut up, &mut left, 0, 0) != 0
                || lept::makeOrientDecision(up, left, 0.0, 0.0, &mut decision, 0) != 0
        };
        if failed {
            return None;
        }
        match decision as u32 {
            lept::L_TEXT_ORIENT_UP => Some(0),
            // Text turned to the left (counter-clockwise): a quarter turn clockwise.
            lept::L_TEXT_ORIENT_LEFT => Some(1),
            lept::L_TEXT_ORIENT_DOWN => Some(2),
            lept::L_TEXT_ORIENT_RIGHT => Some(3),
            _ => None,
        }
    }

    /// The resolution the file declares (pixels per inch), if any.
    pub fn declared_dpi(&self) -> Option<u32> {
        // SAFETY: self.0 is a live Pix.
        let x = unsafe { lept::pixGetXRes(self.0) };
        (x > 0).then_some(x as u32)
    }

    /// A 3 × 3 median: removes scanner specks (salt and pepper) that
    /// Tesseract would read as punctuation (8-bit images).
    pub fn despeckled(&self) -> Option<Pix> {
        // SAFETY: self.0 is live; the result is a new Pix we own.
        Self::own(unsafe { lept::pixMedianFilter(self.0, 3, 3) })
    }

    /// Scaled by `factor` (e.g. 0.25 for quick page statistics).
    pub fn scaled(&self, factor: f32) -> Option<Pix> {
        // SAFETY: self.0 is live; the result is a new Pix we own.
        Self::own(unsafe { lept::pixScale(self.0, factor, factor) })
    }

    /// The image as PNG bytes (for showing a scanned page in the browser).
    pub fn to_png(&self) -> Option<Vec<u8>> {
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut size: usize = 0;
        // SAFETY: self.0 is live; on success Leptonica allocates `data` of
        // `size` bytes, copied here and freed with its own allocator.
        unsafe {
            if lept::pixWriteMem(&mut data, &mut size, self.0, lept::IFF_PNG as c_int) != 0
                || data.is_null()
            {
                return None;
            }
            let png = std::slice::from_raw_parts(data, size).to_vec();
            lept::lept_free(data.cast());
            Some(png)
        }
    }

    /// The grey values row by row (8-bit images only; others give none).
    pub fn grey_bytes(&self) -> Option<Vec<u8>> {
        // SAFETY: self.0 is live.
        let depth = unsafe { lept::pixGetDepth(self.0) };
        if depth != 8 {
            return None;
        }
        let (w, h) = (self.width() as usize, self.height() as usize);
        // SAFETY: an 8-bit Pix holds h rows of wpl 32-bit words.
        let (data, wpl) = unsafe { (lept::pixGetData(self.0), lept::pixGetWpl(self.0) as usize) };
        if data.is_null() {
            return None;
        }
        let mut out = Vec::with_capacity(w * h);
        for y in 0..h {
            // SAFETY: row y lies within the h × wpl words of the image.
            let row = unsafe { std::slice::from_raw_parts(data.add(y * wpl), wpl) };
            // Leptonica packs byte 0 of a row in the most significant bits of word 0.
            out.extend((0..w).map(|x| (row[x / 4] >> (24 - 8 * (x % 4))) as u8));
        }
        Some(out)
    }

    /// The raw pointer, for the Tesseract calls in this module's sibling.
    pub(super) fn as_ptr(&self) -> *mut lept::PIX {
        self.0
    }
}

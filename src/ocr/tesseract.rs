//! One Tesseract engine (a `TessBaseAPI`) behind a safe owned [`Engine`].
//! An engine is used by one thread at a time: the pool gives each worker
//! its own, initialised once (loading the language data takes ~0.3 s).

use std::ffi::{CStr, CString};
use std::os::raw::c_int;

use tesseract_sys as tess;

use super::OcrError;
use super::leptonica::Pix;

/// A Tesseract instance for one language set (e.g. `lav+eng`, or `osd`).
pub struct Engine {
    handle: *mut tess::TessBaseAPI,
}

// The handle is only ever used through &mut self, from one thread at a time.
unsafe impl Send for Engine {}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: the handle came from TessBaseAPICreate and is deleted once.
        unsafe { tess::TessBaseAPIDelete(self.handle) }
    }
}

/// Where OSD says a page's text points, and how sure it is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Orientation {
    /// Clockwise degrees the page must be turned to read upright (0, 90, 180, 270).
    pub rotate_by: u16,
    pub confidence: f32,
}

impl Engine {
    /// Loads `languages` from `datapath` (Tesseract's default when none).
    pub fn new(datapath: Option<&str>, languages: &str) -> Result<Engine, OcrError> {
        let data = datapath
            .map(CString::new)
            .transpose()
            .map_err(|_| OcrError::Setup("tessdata path contains a NUL byte".into()))?;
        let langs = CString::new(languages)
            .map_err(|_| OcrError::Setup("language list contains a NUL byte".into()))?;
        // SAFETY: Create has no preconditions; a null result is checked.
        let handle = unsafe { tess::TessBaseAPICreate() };
        if handle.is_null() {
            return Err(OcrError::Setup("Tesseract could not be created".into()));
        }
        let engine = Engine { handle };
        let data_ptr = data.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
        // SAFETY: the handle is live; both strings outlive the call.
        let failed = unsafe { tess::TessBaseAPIInit3(engine.handle, data_ptr, langs.as_ptr()) };
        if failed != 0 {
            return Err(OcrError::Setup(format!(
                "Tesseract cannot load the language data {languages:?}{}: install tesseract-ocr-lav / tesseract-ocr-eng / tesseract-ocr-osd, or set ocr.tessdata",
                datapath.map(|d| format!(" from {d}")).unwrap_or_default()
            )));
        }
        // One block of text, read line by line: on the rendered letters it
        // beat automatic layout (PSM 3), which dropped a whole line of a
        // clean page (6 % errors against 0.2 %). Set explicitly, as the
        // command line's default differs.
        // SAFETY: the handle is live.
        unsafe {
            tess::TessBaseAPISetPageSegMode(engine.handle, tess::TessPageSegMode_PSM_SINGLE_BLOCK)
        };
        // Tesseract's own notes ("Detected 32 diacritics") stay out of our stderr.
        let (name, value) = (c"debug_file", c"/dev/null");
        // SAFETY: the handle is live; both strings are static.
        unsafe { tess::TessBaseAPISetVariable(engine.handle, name.as_ptr(), value.as_ptr()) };
        Ok(engine)
    }

    /// Detects the page's orientation (an engine made with `osd`).
    pub fn orientation(&mut self, page: &Pix) -> Option<Orientation> {
        let (mut deg, mut conf, mut script_conf): (c_int, f32, f32) = (0, 0.0, 0.0);
        let mut script: *const std::os::raw::c_char = std::ptr::null();
        // SAFETY: handle and page are live for the call; out-pointers are locals;
        // `script` points into Tesseract's own tables and is not freed here.
        let ok = unsafe {
            tess::TessBaseAPISetImage2(self.handle, page.as_ptr());
            tess::TessBaseAPIDetectOrientationScript(
                self.handle,
                &mut deg,
                &mut conf,
                &mut script,
                &mut script_conf,
            )
        };
        // SAFETY: the handle is live.
        unsafe { tess::TessBaseAPIClear(self.handle) };
        (ok != 0).then(|| Orientation {
            // Tesseract reports how far the text is turned clockwise (its
            // "Orientation in degrees"); turning the page by the rest of the
            // circle clockwise sets it upright (its "Rotate").
            rotate_by: ((360 - deg.rem_euclid(360)) % 360) as u16,
            confidence: conf,
        })
    }

    /// Recognises a page: its text and Tesseract's mean word confidence (0–100).
    pub fn recognise(&mut self, page: &Pix, dpi: u32) -> Result<(String, i32), OcrError> {
        // SAFETY: handle and page are live for the calls; the text is copied
        // out and then released with TessDeleteText.
        unsafe {
            tess::TessBaseAPISetImage2(self.handle, page.as_ptr());
            tess::TessBaseAPISetSourceResolution(self.handle, dpi as c_int);
            if tess::TessBaseAPIRecognize(self.handle, std::ptr::null_mut()) != 0 {
                tess::TessBaseAPIClear(self.handle);
                return Err(OcrError::Recognition(
                    "Tesseract could not recognise the page".into(),
                ));
            }
            let raw = tess::TessBaseAPIGetUTF8Text(self.handle);
            let text = if raw.is_null() {
                String::new()
            } else {
                let t = CStr::from_ptr(raw).to_string_lossy().into_owned();
                tess::TessDeleteText(raw);
                t
            };
            let confidence = tess::TessBaseAPIMeanTextConf(self.handle);
            tess::TessBaseAPIClear(self.handle);
            Ok((text, confidence))
        }
    }
}

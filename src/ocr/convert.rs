//! TIFF pages Leptonica cannot decode (16-bit grey with alpha, for one),
//! read with the `tiff` crate and handed on as 8-bit grey: colour and
//! alpha are flattened onto white paper, 16-bit samples keep their top byte.

use std::io::Cursor;

use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::Tag;

use super::leptonica::Pix;

/// Page `n` (from 0) of a TIFF as 8-bit grey, or why it cannot be read.
/// The caller has checked the page's pixel count from its header.
pub fn tiff_page_grey(bytes: &[u8], n: u32) -> Result<Pix, String> {
    let mut decoder = Decoder::new(Cursor::new(bytes))
        .map_err(|e| e.to_string())?
        .with_limits(Limits::default());
    decoder
        .seek_to_image(n as usize)
        .map_err(|e| e.to_string())?;
    let (width, height) = decoder.dimensions().map_err(|e| e.to_string())?;
    let colour = decoder.colortype().map_err(|e| e.to_string())?;
    let dpi = resolution(&mut decoder);
    let samples: Vec<f32> = match decoder.read_image().map_err(|e| e.to_string())? {
        DecodingResult::U8(v) => v.into_iter().map(|s| f32::from(s) / 255.0).collect(),
        DecodingResult::U16(v) => v.into_iter().map(|s| f32::from(s) / 65535.0).collect(),
        _ => return Err(format!("{colour:?} samples are not supported")),
    };
    let grey = to_grey(&samples, colour)
        .ok_or_else(|| format!("the colour layout {colour:?} is not supported"))?;
    Pix::from_grey(width, height, &grey, dpi)
        .ok_or_else(|| "the page's size does not match its samples".to_string())
}

/// 8-bit grey from samples scaled to 0–1, flattened onto white.
fn to_grey(samples: &[f32], colour: ColorType) -> Option<Vec<u8>> {
    let (channels, pixel): (usize, fn(&[f32]) -> f32) = match colour {
        ColorType::Gray(8 | 16) => (1, |p| p[0]),
        // The tiff crate gives grey with an extra (alpha) sample as two bands.
        ColorType::GrayA(8 | 16)
        | ColorType::Multiband {
            bit_depth: 8 | 16,
            num_samples: 2,
        } => (2, |p| p[0] * p[1] + (1.0 - p[1])),
        ColorType::RGB(8 | 16) => (3, |p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]),
        ColorType::RGBA(8 | 16) => (4, |p| {
            (0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2]) * p[3] + (1.0 - p[3])
        }),
        ColorType::CMYK(8 | 16) => (4, |p| {
            let k = 1.0 - p[3];
            0.299 * (1.0 - p[0]) * k + 0.587 * (1.0 - p[1]) * k + 0.114 * (1.0 - p[2]) * k
        }),
        _ => return None,
    };
    Some(
        samples
            .chunks_exact(channels)
            .map(|p| (pixel(p).clamp(0.0, 1.0) * 255.0).round() as u8)
            .collect(),
    )
}

/// The page's resolution in dots per inch, when it declares one.
fn resolution(decoder: &mut Decoder<Cursor<&[u8]>>) -> Option<u32> {
    let x = decoder
        .find_tag(Tag::XResolution)
        .ok()
        .flatten()?
        .into_f32()
        .ok()?;
    let per_cm = decoder
        .find_tag_unsigned::<u16>(Tag::ResolutionUnit)
        .ok()
        .flatten()
        == Some(3);
    let dpi = if per_cm { x * 2.54 } else { x };
    (dpi.is_finite() && (1.0..=100_000.0).contains(&dpi)).then_some(dpi.round() as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_and_alpha_are_flattened_onto_white_paper() {
        // Black at full alpha, black at no alpha, mid grey at half alpha.
        let grey = to_grey(&[0.0, 1.0, 0.0, 0.0, 0.5, 0.5], ColorType::GrayA(16)).expect("grey");
        assert_eq!(grey, vec![0, 255, 191]);
        let two_bands = ColorType::Multiband {
            bit_depth: 16,
            num_samples: 2,
        };
        assert_eq!(
            to_grey(&[0.0, 1.0, 0.0, 0.0], two_bands),
            Some(vec![0, 255])
        );
        // Full black ink in CMYK; no ink.
        let cmyk = to_grey(
            &[0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            ColorType::CMYK(8),
        )
        .expect("cmyk");
        assert_eq!(cmyk, vec![0, 255]);
        assert!(to_grey(&[0.0], ColorType::Palette(8)).is_none());
    }
}

//! The paper's preprocessing (Sec. 3): decode to RGB, resize the shorter side to 256, crop the
//! centre 256x256; then, after the per-pixel mean is subtracted, one of ten 224x224 crops.

use std::io::Cursor;
use std::path::Path;

use image::imageops::FilterType;
use image::{ImageReader, Limits, RgbImage};

use crate::error::{DataError, Result};

/// Sizes of the pipeline: the paper's are 256 and 224 ([`Preprocess::paper`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Preprocess {
    /// The shorter side is resized to this, then the centre square of this side is kept.
    pub resize: usize,
    /// Side of the square crops fed to the network.
    pub crop: usize,
}

/// Images larger than this on either side are refused before decoding (a decompression bomb
/// defence); 16k covers every real photograph.
pub const MAX_SIDE: u32 = 16_384;
/// The decoder may not allocate more than this.
pub const MAX_ALLOC: u64 = 1 << 30;

impl Preprocess {
    /// Resize 256, crops of 224 (paper Sec. 3).
    pub const fn paper() -> Self {
        Self { resize: 256, crop: 224 }
    }

    /// Crops of `crop` pixels from `crop * 256 / 224`-pixel squares, for networks with other
    /// input sizes.
    pub fn for_input(crop: usize) -> Self {
        let p = Self::paper();
        Self { resize: (crop * p.resize).div_ceil(p.crop), crop }
    }

    /// Decodes `bytes` and returns the centre `resize x resize` square after resizing the
    /// shorter side to `resize`. `name` names the source in errors.
    pub fn load_bytes(&self, bytes: &[u8], name: &Path) -> Result<RgbImage> {
        let img = decode(bytes, name)?;
        Ok(self.square(&img))
    }

    /// As [`Preprocess::load_bytes`], from a file.
    pub fn load(&self, path: &Path) -> Result<RgbImage> {
        let bytes = std::fs::read(path)
            .map_err(|e| DataError::BadImage { path: path.into(), reason: format!("cannot read: {e}") })?;
        self.load_bytes(&bytes, path)
    }

    /// Resizes the shorter side to `resize` with a triangle (bilinear) filter whose support
    /// grows with the reduction, so it antialiases when shrinking, then crops the centre square.
    pub fn square(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        let (nw, nh) = resized_dims(w, h, self.resize as u32);
        let resized =
            if (nw, nh) == (w, h) { img.clone() } else { image::imageops::resize(img, nw, nh, FilterType::Triangle) };
        let s = self.resize as u32;
        let (x0, y0) = ((nw - s) / 2, (nh - s) / 2);
        image::imageops::crop_imm(&resized, x0, y0, s, s).to_image()
    }

    /// Top-left corners `(row, col)` of the ten crops (the paper's Sec. 3 names them, this
    /// project fixes their order): centre, top-left, top-right, bottom-left, bottom-right, then
    /// the same five flipped horizontally.
    pub fn crop_offsets(&self) -> [(usize, usize); 5] {
        let m = self.resize - self.crop;
        [(m / 2, m / 2), (0, 0), (0, m), (m, 0), (m, m)]
    }

    /// Writes crop `k` (0..10, see [`Crop`]) of `img` minus `mean` into `out`, CHW, f32.
    ///
    /// # Shapes
    /// - `img`: `resize x resize` RGB; `mean`: `[3, resize, resize]` flattened, or `None`
    /// - `out`: `[3, crop, crop]` flattened
    pub fn crop_into(&self, img: &RgbImage, mean: Option<&[f32]>, crop: Crop, out: &mut [f32]) {
        let (s, c) = (self.resize, self.crop);
        debug_assert_eq!(img.dimensions(), (s as u32, s as u32));
        debug_assert_eq!(out.len(), 3 * c * c);
        let (oy, ox) = self.crop_offsets()[crop.position()];
        let raw = img.as_raw();
        for y in 0..c {
            let row = (oy + y) * s;
            for x in 0..c {
                let sx = if crop.flipped() { ox + c - 1 - x } else { ox + x };
                let p = (row + sx) * 3;
                for ch in 0..3 {
                    let m = mean.map_or(0.0, |m| m[ch * s * s + row + sx]);
                    out[(ch * c + y) * c + x] = raw[p + ch] as f32 - m;
                }
            }
        }
    }
}

/// One of the ten crops: index 0..5 = centre, top-left, top-right, bottom-left, bottom-right;
/// 5..10 = the same, flipped horizontally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Crop(pub usize);

impl Crop {
    pub const CENTRE: Crop = Crop(0);
    pub const ALL: [Crop; 10] =
        [Crop(0), Crop(1), Crop(2), Crop(3), Crop(4), Crop(5), Crop(6), Crop(7), Crop(8), Crop(9)];

    pub fn position(self) -> usize {
        self.0 % 5
    }

    pub fn flipped(self) -> bool {
        self.0 >= 5
    }
}

/// The size after resizing the shorter side to `short`, rounding the longer side to the
/// nearest pixel (and at least `short`).
pub fn resized_dims(w: u32, h: u32, short: u32) -> (u32, u32) {
    let long = |l: u32, s: u32| ((l as f64 * short as f64 / s as f64).round() as u32).max(short);
    if w <= h {
        (short, long(h, w))
    } else {
        (long(w, h), short)
    }
}

/// Decodes any format the `image` crate reads into 8-bit RGB: grayscale is replicated, alpha
/// dropped, 16-bit scaled down, CMYK JPEGs converted by the decoder. Sizes over [`MAX_SIDE`]
/// and decoder allocations over [`MAX_ALLOC`] are refused.
pub fn decode(bytes: &[u8], name: &Path) -> Result<RgbImage> {
    let bad = |reason: String| DataError::BadImage { path: name.into(), reason };
    if bytes.is_empty() {
        return Err(bad("empty file".into()));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()))?;
    if reader.format().is_none() {
        return Err(bad("not an image (unknown format)".into()));
    }
    // JPEG decoders fill a truncated scan with grey instead of failing; a JPEG must hold its
    // end-of-image marker (FF D9, which cannot occur inside entropy-coded data) near its end.
    if reader.format() == Some(image::ImageFormat::Jpeg) {
        let tail = &bytes[bytes.len().saturating_sub(4096)..];
        if !tail.windows(2).any(|w| w == [0xff, 0xd9]) {
            return Err(bad("truncated JPEG (no end-of-image marker)".into()));
        }
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| match e {
        image::ImageError::Limits(l) => {
            bad(format!("refused: larger than {MAX_SIDE}x{MAX_SIDE} pixels or {} MiB ({l})", MAX_ALLOC >> 20))
        }
        other => bad(format!("does not decode: {other}")),
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(bad("image has no pixels".into()));
    }
    Ok(img.to_rgb8())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resize_dims_for_odd_aspect_ratios() {
        assert_eq!(resized_dims(500, 375, 256), (341, 256)); // 500 * 256 / 375 = 341.33
        assert_eq!(resized_dims(375, 500, 256), (256, 341));
        assert_eq!(resized_dims(256, 256, 256), (256, 256));
        assert_eq!(resized_dims(1000, 10, 256), (25600, 256));
        assert_eq!(resized_dims(257, 256, 256), (257, 256));
        assert_eq!(resized_dims(100, 99, 256), (259, 256)); // 100 * 256 / 99 = 258.59
    }

    #[test]
    fn crop_offsets_in_design_order() {
        let p = Preprocess::paper();
        assert_eq!(p.crop_offsets(), [(16, 16), (0, 0), (0, 32), (32, 0), (32, 32)]);
        assert_eq!(Preprocess::for_input(112), Preprocess { resize: 128, crop: 112 });
    }

    #[test]
    fn crops_and_flips_read_the_right_pixels() {
        // A 4x4 image cropped to 2x2: pixel value = 10 * row + col in every channel, plus
        // 100 * channel.
        let p = Preprocess { resize: 4, crop: 2 };
        let img = RgbImage::from_fn(4, 4, |x, y| {
            let v = (10 * y + x) as u8;
            image::Rgb([v, v + 100, v + 200])
        });
        let mut out = vec![0f32; 12];
        let read = |k: usize, out: &mut Vec<f32>| {
            p.crop_into(&img, None, Crop(k), out);
            out[..4].to_vec()
        };
        assert_eq!(read(0, &mut out), vec![11., 12., 21., 22.]); // centre
        assert_eq!(read(1, &mut out), vec![0., 1., 10., 11.]); // top-left
        assert_eq!(read(2, &mut out), vec![2., 3., 12., 13.]); // top-right
        assert_eq!(read(3, &mut out), vec![20., 21., 30., 31.]); // bottom-left
        assert_eq!(read(4, &mut out), vec![22., 23., 32., 33.]); // bottom-right
        assert_eq!(read(5, &mut out), vec![12., 11., 22., 21.]); // centre, flipped
        assert_eq!(read(7, &mut out), vec![3., 2., 13., 12.]); // top-right, flipped
        p.crop_into(&img, None, Crop(9), &mut out);
        assert_eq!(&out[8..], &[223., 222., 233., 232.]); // blue channel of bottom-right, flipped
                                                          // The mean is subtracted per pixel, before the flip.
        let mean: Vec<f32> = (0..48).map(|i| i as f32).collect();
        p.crop_into(&img, Some(&mean), Crop(5), &mut out);
        // Flipped centre, first pixel = image (1, 2) minus mean (1, 2) = 12 - 6.
        assert_eq!(out[0], 12.0 - 6.0);
    }

    #[test]
    fn square_keeps_the_centre() {
        // 512x256, left half black, right half white: the centre 256 square after resizing to
        // 512x256 (no resize) is the middle, half black and half white.
        let img =
            RgbImage::from_fn(
                512,
                256,
                |x, _| if x < 256 { image::Rgb([0, 0, 0]) } else { image::Rgb([255, 255, 255]) },
            );
        let sq = Preprocess::paper().square(&img);
        assert_eq!(sq.dimensions(), (256, 256));
        assert_eq!(sq.get_pixel(0, 0)[0], 0);
        assert_eq!(sq.get_pixel(127, 100)[0], 0);
        assert_eq!(sq.get_pixel(128, 100)[0], 255);
        // A small image is scaled up: 64x32 -> 512x256.
        let small = RgbImage::from_pixel(64, 32, image::Rgb([9, 8, 7]));
        let sq = Preprocess::paper().square(&small);
        assert_eq!(sq.dimensions(), (256, 256));
        assert_eq!(sq.get_pixel(200, 200).0, [9, 8, 7]);
    }
}

//! EXIF orientation (the 8 values of tag 0x0112) and its application.

use crate::image::RgbImage;

/// An EXIF orientation: how the stored pixels must be transformed to be
/// displayed upright. Values follow the EXIF tag (1 = upright).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Orientation {
    /// 1: stored upright.
    #[default]
    Normal,
    /// 2: mirrored left-right.
    FlipHorizontal,
    /// 3: rotated 180 degrees.
    Rotate180,
    /// 4: mirrored top-bottom.
    FlipVertical,
    /// 5: transposed (mirror along the main diagonal).
    Transpose,
    /// 6: display by rotating 90 degrees clockwise.
    Rotate90,
    /// 7: transversed (mirror along the anti-diagonal).
    Transverse,
    /// 8: display by rotating 90 degrees counter-clockwise.
    Rotate270,
}

impl Orientation {
    /// From the EXIF value; `None` for values outside 1..=8.
    pub fn from_exif(value: u32) -> Option<Self> {
        Some(match value {
            1 => Self::Normal,
            2 => Self::FlipHorizontal,
            3 => Self::Rotate180,
            4 => Self::FlipVertical,
            5 => Self::Transpose,
            6 => Self::Rotate90,
            7 => Self::Transverse,
            8 => Self::Rotate270,
            _ => return None,
        })
    }

    /// The EXIF value (1..=8).
    pub fn to_exif(self) -> u32 {
        match self {
            Self::Normal => 1,
            Self::FlipHorizontal => 2,
            Self::Rotate180 => 3,
            Self::FlipVertical => 4,
            Self::Transpose => 5,
            Self::Rotate90 => 6,
            Self::Transverse => 7,
            Self::Rotate270 => 8,
        }
    }

    /// True when applying it swaps width and height.
    pub fn swaps_axes(self) -> bool {
        matches!(
            self,
            Self::Transpose | Self::Rotate90 | Self::Transverse | Self::Rotate270
        )
    }

    /// Size `(w, h)` of the upright image given the stored size.
    pub fn upright_size(self, width: u32, height: u32) -> (u32, u32) {
        if self.swaps_axes() {
            (height, width)
        } else {
            (width, height)
        }
    }
}

/// Writes `src` (stored `width x height` RGB8) transformed by `o` into `dst`.
pub(crate) fn apply(o: Orientation, src: &[u8], width: u32, height: u32, dst: &mut RgbImage) {
    let (ow, oh) = o.upright_size(width, height);
    dst.set_size(ow, oh);
    let (w, h) = (width as usize, height as usize);
    let (ow, oh) = (ow as usize, oh as usize);
    if o == Orientation::Normal {
        dst.data.copy_from_slice(&src[..w * h * 3]);
        return;
    }
    if o == Orientation::FlipVertical {
        for y in 0..oh {
            let s = (h - 1 - y) * w * 3;
            dst.data[y * w * 3..(y + 1) * w * 3].copy_from_slice(&src[s..s + w * 3]);
        }
        return;
    }
    for (y, row) in dst.data.chunks_exact_mut(ow * 3).enumerate() {
        for (x, px) in row.chunks_exact_mut(3).enumerate() {
            let (sx, sy) = match o {
                Orientation::Normal | Orientation::FlipVertical => (x, y),
                Orientation::FlipHorizontal => (w - 1 - x, y),
                Orientation::Rotate180 => (w - 1 - x, h - 1 - y),
                Orientation::Transpose => (y, x),
                Orientation::Rotate90 => (y, h - 1 - x),
                Orientation::Transverse => (w - 1 - y, h - 1 - x),
                Orientation::Rotate270 => (w - 1 - y, x),
            };
            let s = (sy * w + sx) * 3;
            px.copy_from_slice(&src[s..s + 3]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn img(w: u32, h: u32) -> Vec<u8> {
        (0..w * h)
            .flat_map(|i| [i as u8, (i * 7) as u8, 0])
            .collect()
    }

    #[test]
    fn rotate_then_inverse_is_identity() {
        let src = img(5, 3);
        let mut a = RgbImage::default();
        let mut b = RgbImage::default();
        apply(Orientation::Rotate90, &src, 5, 3, &mut a);
        assert_eq!((a.width, a.height), (3, 5));
        apply(Orientation::Rotate270, &a.data, 3, 5, &mut b);
        assert_eq!(b.data, src);
        for o in [
            Orientation::FlipHorizontal,
            Orientation::FlipVertical,
            Orientation::Rotate180,
            Orientation::Transpose,
            Orientation::Transverse,
        ] {
            apply(o, &src, 5, 3, &mut a);
            let (w, h) = (a.width, a.height);
            let first = a.data.clone();
            apply(o, &first, w, h, &mut b);
            assert_eq!(b.data, src, "{o:?} is an involution");
        }
    }

    #[test]
    fn rotate90_puts_bottom_left_at_top_left() {
        let src = img(4, 2);
        let mut a = RgbImage::default();
        apply(Orientation::Rotate90, &src, 4, 2, &mut a);
        // bottom-left source pixel (0, 1) has index 4
        assert_eq!(&a.data[..3], &src[4 * 3..4 * 3 + 3]);
    }
}

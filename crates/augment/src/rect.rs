//! Integer rectangles in full-image pixel coordinates.

use serde::{Deserialize, Serialize};

/// A rectangle of an image, in pixels: columns `x..x + w`, rows `y..y + h`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Rect {
    /// Left column.
    pub x: u32,
    /// Top row.
    pub y: u32,
    /// Width in pixels.
    pub w: u32,
    /// Height in pixels.
    pub h: u32,
}

impl Rect {
    /// A rectangle from its corner and size.
    pub const fn new(x: u32, y: u32, w: u32, h: u32) -> Self {
        Self { x, y, w, h }
    }

    /// The whole of a `(width, height)` image.
    pub const fn full(size: (u32, u32)) -> Self {
        Self::new(0, 0, size.0, size.1)
    }

    /// One past the last column.
    pub const fn right(&self) -> u64 {
        self.x as u64 + self.w as u64
    }

    /// One past the last row.
    pub const fn bottom(&self) -> u64 {
        self.y as u64 + self.h as u64
    }

    /// Whether `other` lies inside `self`.
    pub const fn contains(&self, other: &Rect) -> bool {
        other.x >= self.x
            && other.y >= self.y
            && other.right() <= self.right()
            && other.bottom() <= self.bottom()
    }

    /// Whether the rectangle lies inside a `(width, height)` image.
    pub const fn fits_in(&self, size: (u32, u32)) -> bool {
        self.right() <= size.0 as u64 && self.bottom() <= size.1 as u64
    }

    /// The smallest integer rectangle covering `[x0, x1) x [y0, y1)`, clipped
    /// to a `(width, height)` image (at least one pixel when the image is not
    /// empty).
    pub(crate) fn covering(x0: f64, y0: f64, x1: f64, y1: f64, size: (u32, u32)) -> Rect {
        let clip = |lo: f64, hi: f64, n: u32| -> (u32, u32) {
            let n64 = f64::from(n);
            let a = lo.floor().clamp(0.0, n64) as u32;
            let b = hi.ceil().clamp(0.0, n64) as u32;
            if b > a {
                (a, b - a)
            } else {
                let a = a.min(n.saturating_sub(1));
                (a, u32::from(n > 0))
            }
        };
        let (x, w) = clip(x0, x1, size.0);
        let (y, h) = clip(y0, y1, size.1);
        Rect { x, y, w, h }
    }
}

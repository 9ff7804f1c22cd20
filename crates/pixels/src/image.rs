//! Borrowed and owned RGB8 HWC images.

/// A borrowed RGB8 image: row-major HWC, no padding,
/// `data.len() == width * height * 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageView<'a> {
    pub width: u32,
    pub height: u32,
    pub data: &'a [u8],
}

impl<'a> ImageView<'a> {
    /// Wraps `data` if its length is exactly `width * height * 3`.
    pub fn new(width: u32, height: u32, data: &'a [u8]) -> Option<Self> {
        (data.len() as u64 == rgb_len(width, height)).then_some(Self {
            width,
            height,
            data,
        })
    }

    /// True when `data.len() == width * height * 3`.
    pub fn is_consistent(&self) -> bool {
        self.data.len() as u64 == rgb_len(self.width, self.height)
    }

    /// The three bytes of pixel `(x, y)`, or `None` outside the image.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        self.data.get(i..i + 3).map(|p| [p[0], p[1], p[2]])
    }

    /// Copies the view into an owned image.
    pub fn to_owned_image(&self) -> RgbImage {
        RgbImage {
            width: self.width,
            height: self.height,
            data: self.data.to_vec(),
        }
    }
}

/// A mutable borrowed RGB8 image (same layout as [`ImageView`]), e.g. one
/// slot of a batch buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct ImageViewMut<'a> {
    pub width: u32,
    pub height: u32,
    pub data: &'a mut [u8],
}

impl<'a> ImageViewMut<'a> {
    /// Wraps `data` if its length is exactly `width * height * 3`.
    pub fn new(width: u32, height: u32, data: &'a mut [u8]) -> Option<Self> {
        (data.len() as u64 == rgb_len(width, height)).then_some(Self {
            width,
            height,
            data,
        })
    }

    /// Reborrows as a read-only view.
    pub fn as_view(&self) -> ImageView<'_> {
        ImageView {
            width: self.width,
            height: self.height,
            data: self.data,
        }
    }
}

/// An owned RGB8 HWC image. Decoders and resizers write into one and reuse
/// its allocation: keep one per thread.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RgbImage {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl RgbImage {
    /// A black image of the given size.
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            data: vec![0; rgb_len(width, height) as usize],
        }
    }

    /// Takes ownership of `data` if its length is exactly `width * height * 3`.
    pub fn from_raw(width: u32, height: u32, data: Vec<u8>) -> Option<Self> {
        (data.len() as u64 == rgb_len(width, height)).then_some(Self {
            width,
            height,
            data,
        })
    }

    /// Borrows the image.
    pub fn view(&self) -> ImageView<'_> {
        ImageView {
            width: self.width,
            height: self.height,
            data: &self.data,
        }
    }

    /// Borrows the image mutably.
    pub fn view_mut(&mut self) -> ImageViewMut<'_> {
        ImageViewMut {
            width: self.width,
            height: self.height,
            data: &mut self.data,
        }
    }

    /// Sets the geometry and sizes `data` to match, keeping the allocation
    /// (pixel contents are unspecified afterwards).
    pub fn set_size(&mut self, width: u32, height: u32) {
        self.width = width;
        self.height = height;
        self.data.resize(rgb_len(width, height) as usize, 0);
    }
}

/// `width * height * 3` without overflow.
pub(crate) fn rgb_len(width: u32, height: u32) -> u64 {
    u64::from(width) * u64::from(height) * 3
}

//! Pack once, read zero-copy: a memory-mapped store of decoded (or
//! re-encoded) images.
//!
//! [`pack`] decodes every sample of a [`brigade_index::Index`] once, shrinks
//! it so its longer (or shorter) side is at most `max_side`, and writes one
//! file (layout in [`format`]): a checksummed header, page-aligned payloads,
//! a `#[repr(C)]` record table read through `bytemuck`, class names and the
//! list of skipped samples. Packing is parallel (rayon), written in order by
//! one writer, checkpointed to `STORE.partial` (a rerun resumes) and renamed
//! into place only when complete.
//!
//! [`Store::open`] maps the file and validates everything once; after that
//! [`Store::get`] is a slice of the map: [`Payload::Raw`] is an
//! [`ImageView`](brigade_pixels::ImageView) straight into the page cache.
//! [`Store::open_for`] also refuses a store packed from another version of
//! the dataset.
//!
//! ```
//! use brigade_index::{Index, IndexOptions, Split};
//! use brigade_pixels::{encode_jpeg, RgbImage};
//! use brigade_store::{pack, PackOptions, Payload, Store};
//!
//! // a tiny ImageFolder dataset: 2 classes x 3 JPEGs of 400x300
//! let dir = tempfile::tempdir()?;
//! for class in ["pho", "ramen"] {
//!     std::fs::create_dir_all(dir.path().join(class))?;
//!     for i in 0..3u8 {
//!         let img = RgbImage::from_raw(400, 300, vec![40 * i; 400 * 300 * 3]).unwrap();
//!         let mut jpeg = Vec::new();
//!         encode_jpeg(img.view(), 90, &mut jpeg)?;
//!         std::fs::write(dir.path().join(class).join(format!("{i}.jpg")), jpeg)?;
//!     }
//! }
//! let (index, _report) = Index::build(dir.path(), &IndexOptions::default())?;
//!
//! let out = dir.path().join("food.store");
//! let report = pack(&index, &out, &PackOptions { max_side: 64, ..Default::default() })?;
//! assert_eq!((report.packed, report.skipped.len()), (6, 0));
//!
//! let store = Store::open_for(&out, &index)?;
//! assert_eq!(store.classes(), ["pho", "ramen"]);
//! let first = store.get(0)?;
//! let Payload::Raw(view) = first.payload else { unreachable!() };
//! assert_eq!((view.width, view.height), (64, 48));
//! assert_eq!(store.ids_in(Split::Train).len(), 6);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
pub mod format;
mod reader;
mod writer;

pub use crate::error::StoreError;
pub use crate::format::{Record, Skipped};
pub use crate::reader::{Payload, Side, Store, StoreFormat, StoredImage};
pub use crate::writer::{pack, partial_path, prepare_image, skipped_path, PackOptions, PackReport};

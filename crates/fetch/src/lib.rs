//! HTTP download with resume and checksums, safe tar.gz extraction.
//!
//! Used for datasets (`brigade fetch food101`) and for pretrained weight
//! files (the zoo crate): [`download`] resumes a `.part` file with HTTP
//! `Range`, verifies SHA-256 / MD5 / size / a torchvision SHA-256 prefix, and
//! renames into place only after the check passes; [`extract_tar_gz`] refuses
//! entries that would land outside the destination and only ever exposes a
//! complete tree.
//!
//! ```
//! use brigade_fetch::{extract_tar_gz, is_complete, verify_file, Expected, ExtractOptions};
//!
//! let dir = tempfile::tempdir()?;
//! // A small archive with one top folder, as dataset archives have.
//! let archive = dir.path().join("data.tar.gz");
//! let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive)?, Default::default());
//! let mut tar = tar::Builder::new(gz);
//! let mut header = tar::Header::new_gnu();
//! header.set_size(5);
//! header.set_mode(0o644);
//! tar.append_data(&mut header, "data/hello.txt", &b"hello"[..])?;
//! tar.into_inner()?.finish()?;
//!
//! let digests = verify_file(&archive, &Expected::default())?;
//! let expected = Expected { sha256: Some(digests.sha256.clone()), ..Default::default() };
//! assert!(verify_file(&archive, &expected).is_ok());
//!
//! let dest = dir.path().join("data");
//! extract_tar_gz(&archive, &dest, &ExtractOptions { strip_components: 1 })?;
//! assert!(is_complete(&dest));
//! assert_eq!(std::fs::read(dest.join("hello.txt"))?, b"hello");
//!
//! assert_eq!(
//!     brigade_fetch::sha256_prefix_from_torchvision_name("resnet50-11ad3fa6.pth").as_deref(),
//!     Some("11ad3fa6")
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod download;
mod error;
mod extract;

pub use download::{
    digest_file, download, download_with, part_path, sha256_prefix_from_torchvision_name,
    verify_file, Digests, DownloadOptions, Expected, Progress,
};
pub use error::FetchError;
pub use extract::{extract_tar_gz, is_complete, ExtractOptions, COMPLETE_MARKER};

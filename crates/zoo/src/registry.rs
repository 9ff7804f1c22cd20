//! Known pretrained weights: names → URLs, the cache folder, and resolving a
//! name or a path to a local file. Downloading itself is the CLI's job
//! (`brigade weights fetch`, through `brigade-fetch`); this crate never
//! touches the network.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::arch::Arch;
use crate::error::{io, Result, ZooError};

/// One published weights file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KnownWeights {
    /// The name used by `brigade weights fetch NAME` and [`resolve_weights`].
    pub name: &'static str,
    /// The architecture the file is for.
    pub arch: Arch,
    /// Where it is published.
    pub url: &'static str,
    /// The file name in the cache folder.
    pub file_name: &'static str,
    /// Prefix of the file's sha256, as published in torchvision's file names;
    /// `None` when no checksum is published (Hugging Face files).
    pub sha256_prefix: Option<&'static str>,
    /// Published ImageNet-1k top-1 (%), from torchvision's weight metadata.
    pub imagenet_top1: Option<f64>,
    /// Who publishes it, and the upstream weights tag.
    pub source: &'static str,
}

macro_rules! tv {
    ($name:expr, $arch:expr, $file:expr, $sha:expr, $top1:expr, $tag:expr) => {
        KnownWeights {
            name: $name,
            arch: $arch,
            url: concat!("https://download.pytorch.org/models/", $file),
            file_name: $file,
            sha256_prefix: Some($sha),
            imagenet_top1: Some($top1),
            source: concat!("torchvision ", $tag),
        }
    };
}

static KNOWN: [KnownWeights; 9] = [
    tv!(
        "resnet18",
        Arch::Resnet18,
        "resnet18-f37072fd.pth",
        "f37072fd",
        69.758,
        "IMAGENET1K_V1"
    ),
    tv!(
        "resnet34",
        Arch::Resnet34,
        "resnet34-b627a593.pth",
        "b627a593",
        73.314,
        "IMAGENET1K_V1"
    ),
    tv!(
        "resnet50",
        Arch::Resnet50,
        "resnet50-11ad3fa6.pth",
        "11ad3fa6",
        80.858,
        "IMAGENET1K_V2"
    ),
    tv!(
        "resnet50.v1",
        Arch::Resnet50,
        "resnet50-0676ba61.pth",
        "0676ba61",
        76.130,
        "IMAGENET1K_V1"
    ),
    tv!(
        "efficientnet_b0",
        Arch::EfficientnetB0,
        "efficientnet_b0_rwightman-7f5810bc.pth",
        "7f5810bc",
        77.692,
        "IMAGENET1K_V1"
    ),
    tv!(
        "efficientnet_b2",
        Arch::EfficientnetB2,
        "efficientnet_b2_rwightman-c35c1473.pth",
        "c35c1473",
        80.608,
        "IMAGENET1K_V1"
    ),
    tv!(
        "mobilenet_v3_large",
        Arch::MobilenetV3Large,
        "mobilenet_v3_large-5c1a4163.pth",
        "5c1a4163",
        75.274,
        "IMAGENET1K_V2"
    ),
    tv!(
        "mobilenet_v3_large.v1",
        Arch::MobilenetV3Large,
        "mobilenet_v3_large-8738ca79.pth",
        "8738ca79",
        74.042,
        "IMAGENET1K_V1"
    ),
    KnownWeights {
        name: "resnet50d",
        arch: Arch::Resnet50d,
        url: "https://huggingface.co/timm/resnet50d.ra2_in1k/resolve/main/model.safetensors",
        file_name: "resnet50d.ra2_in1k.safetensors",
        sha256_prefix: None,
        imagenet_top1: None,
        source: "timm resnet50d.ra2_in1k (Hugging Face)",
    },
];

/// Every known weights name.
pub fn known_weights() -> &'static [KnownWeights] {
    &KNOWN
}

/// Looks a weights name up (case-insensitive).
pub fn find_known(name: &str) -> Option<&'static KnownWeights> {
    KNOWN
        .iter()
        .find(|k| k.name.eq_ignore_ascii_case(name.trim()))
}

/// `${XDG_CACHE_HOME:-~/.cache}/brigade/weights`.
pub fn weights_cache_dir() -> PathBuf {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => match std::env::var_os("HOME") {
            Some(h) if !h.is_empty() => PathBuf::from(h).join(".cache"),
            _ => PathBuf::from(".cache"),
        },
    };
    base.join("brigade").join("weights")
}

/// A local file for `name_or_path`: an existing path is returned as is;
/// a known name resolves to its file in [`weights_cache_dir`] (an error
/// telling to run `brigade weights fetch NAME` when it is not there).
pub fn resolve_weights(name_or_path: &str) -> Result<PathBuf> {
    resolve_weights_in(name_or_path, &weights_cache_dir())
}

/// [`resolve_weights`] with an explicit cache folder.
pub fn resolve_weights_in(name_or_path: &str, cache_dir: &Path) -> Result<PathBuf> {
    let p = Path::new(name_or_path);
    if p.is_file() {
        return Ok(p.to_path_buf());
    }
    let Some(k) = find_known(name_or_path) else {
        return Err(ZooError::UnknownWeights(name_or_path.to_string()));
    };
    let path = cache_dir.join(k.file_name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ZooError::NotDownloaded {
            name: k.name.to_string(),
            path,
        })
    }
}

/// The sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

impl KnownWeights {
    /// Checks a downloaded file against the published sha256 prefix (a no-op
    /// returning `Ok(false)` when none is published; `Ok(true)` when verified).
    pub fn verify(&self, path: &Path) -> Result<bool> {
        let Some(prefix) = self.sha256_prefix else {
            return Ok(false);
        };
        let found = sha256_file(path)?;
        if found.starts_with(prefix) {
            Ok(true)
        } else {
            Err(ZooError::Checksum {
                path: path.to_path_buf(),
                expected: prefix.to_string(),
                found,
            })
        }
    }
}

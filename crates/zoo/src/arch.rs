//! The architectures, their names and published figures.

use std::fmt;
use std::str::FromStr;

use crate::error::ZooError;

/// A network architecture. Names (`FromStr`/`Display`) are torchvision's
/// (`resnet50`, `efficientnet_b0`, ...) and timm's for `resnet50d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    /// torchvision `resnet18`.
    Resnet18,
    /// torchvision `resnet34`.
    Resnet34,
    /// torchvision `resnet50` (V1.5: stride on the 3x3).
    Resnet50,
    /// timm `resnet50d`: 3-conv deep stem (32, 32, 64) and avg-pool
    /// downsampling shortcuts; timm parameter names (`conv1.0`, `downsample.1`, ...).
    Resnet50d,
    /// torchvision `efficientnet_b0`.
    EfficientnetB0,
    /// torchvision `efficientnet_b2`.
    EfficientnetB2,
    /// torchvision `mobilenet_v3_large`.
    MobilenetV3Large,
}

/// Published facts about an architecture (1000-class ImageNet versions).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArchInfo {
    /// Parameter count of the 1000-class model (torchvision's `num_params`;
    /// for `resnet50d`, counted from this implementation, which a test checks).
    pub num_params: u64,
    /// Best published ImageNet-1k top-1 (%) of the weights in
    /// [`crate::known_weights`] for it, from torchvision's weight metadata;
    /// `None` where we have no verified figure.
    pub imagenet_top1: Option<f64>,
    /// Forward cost at 224 px, GFLOPs (torchvision's `_ops`), if published.
    pub gflops: Option<f64>,
}

impl Arch {
    /// Every architecture.
    pub const ALL: [Arch; 7] = [
        Arch::Resnet18,
        Arch::Resnet34,
        Arch::Resnet50,
        Arch::Resnet50d,
        Arch::EfficientnetB0,
        Arch::EfficientnetB2,
        Arch::MobilenetV3Large,
    ];

    /// The canonical name (torchvision/timm).
    pub fn name(self) -> &'static str {
        match self {
            Arch::Resnet18 => "resnet18",
            Arch::Resnet34 => "resnet34",
            Arch::Resnet50 => "resnet50",
            Arch::Resnet50d => "resnet50d",
            Arch::EfficientnetB0 => "efficientnet_b0",
            Arch::EfficientnetB2 => "efficientnet_b2",
            Arch::MobilenetV3Large => "mobilenet_v3_large",
        }
    }

    /// Channels of the body's output (input of the head).
    pub fn num_features(self) -> i64 {
        match self {
            Arch::Resnet18 | Arch::Resnet34 => 512,
            Arch::Resnet50 | Arch::Resnet50d => 2048,
            Arch::EfficientnetB0 => 1280,
            Arch::EfficientnetB2 => 1408,
            Arch::MobilenetV3Large => 960,
        }
    }

    /// Parameter count and published ImageNet figures.
    ///
    /// | arch | params | top-1 | GFLOPs |
    /// |---|---|---|---|
    /// | resnet18 | 11,689,512 | 69.758 | 1.81 |
    /// | resnet34 | 21,797,672 | 73.314 | 3.66 |
    /// | resnet50 | 25,557,032 | 80.858 (IMAGENET1K_V2) | 4.09 |
    /// | resnet50d | 25,576,264 | — | — |
    /// | efficientnet_b0 | 5,288,548 | 77.692 | 0.39 |
    /// | efficientnet_b2 | 9,109,994 | 80.608 | 1.09 |
    /// | mobilenet_v3_large | 5,483,032 | 75.274 (IMAGENET1K_V2) | 0.22 |
    pub fn info(self) -> ArchInfo {
        let (num_params, top1, gflops) = match self {
            Arch::Resnet18 => (11_689_512, Some(69.758), Some(1.81)),
            Arch::Resnet34 => (21_797_672, Some(73.314), Some(3.66)),
            Arch::Resnet50 => (25_557_032, Some(80.858), Some(4.09)),
            Arch::Resnet50d => (25_576_264, None, None),
            Arch::EfficientnetB0 => (5_288_548, Some(77.692), Some(0.39)),
            Arch::EfficientnetB2 => (9_109_994, Some(80.608), Some(1.09)),
            Arch::MobilenetV3Large => (5_483_032, Some(75.274), Some(0.22)),
        };
        ArchInfo {
            num_params,
            imagenet_top1: top1,
            gflops,
        }
    }

    /// Whether this is one of the ResNets.
    pub fn is_resnet(self) -> bool {
        matches!(
            self,
            Arch::Resnet18 | Arch::Resnet34 | Arch::Resnet50 | Arch::Resnet50d
        )
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = ZooError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('-', "_");
        Arch::ALL
            .into_iter()
            .find(|a| a.name() == norm)
            .ok_or_else(|| {
                ZooError::UnknownArch(s.to_string(), Arch::ALL.map(Arch::name).join(", "))
            })
    }
}

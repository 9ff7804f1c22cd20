//! The one data-side crate that links tch: loader batches to normalised
//! device tensors.
//!
//! [`ToTensor`] wraps a [`Batch`]'s u8 NHWC bytes in a CPU tensor without
//! copying (`Tensor::from_blob`), permutes it to NCHW (a view with
//! channels-last strides), uploads the u8 data (the only copy: 1 byte per
//! value), and converts + normalises on the device into `Float`, `BFloat16` or
//! `Half`, keeping the channels-last layout. The result owns its memory, so the
//! batch may be dropped (its ring slot recycled) as soon as this returns.
//!
//! ```
//! use brigade_loader::{Loader, LoaderConfig, NearestResize, VecSource};
//! use brigade_pixels::RgbImage;
//! use brigade_tensor::{ToTensor, IMAGENET_MEAN, IMAGENET_STD};
//! use tch::{Device, Kind};
//!
//! let images = vec![RgbImage { width: 4, height: 4, data: vec![255; 48] }; 2];
//! let source = VecSource { images, labels: vec![3, 5], broken: vec![] };
//! let config = LoaderConfig { batch_size: 2, threads: 1, shuffle: false, ..Default::default() };
//! let mut loader = Loader::new(source, NearestResize::default(), config)?;
//! let batch = loader.epoch(0, 4, 0)?.next().unwrap()?;
//! let to = ToTensor::new(Device::Cpu, IMAGENET_MEAN, IMAGENET_STD, Kind::Float)?;
//! let x = to.images(&batch)?;
//! assert_eq!(x.size(), [2, 3, 4, 4]);
//! assert_eq!(x.stride(), [48, 1, 12, 3]); // channels-last
//! let red = x.double_value(&[0, 0, 0, 0]);
//! assert!((red - (1.0 - 0.485) / 0.229).abs() < 1e-5);
//! assert_eq!(Vec::<i64>::try_from(to.labels(&batch)?)?, [3, 5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use brigade_loader::Batch;
use tch::{Device, Kind, TchError, Tensor};

/// ImageNet channel means (RGB, on the 0..1 scale).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations (RGB, on the 0..1 scale).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Errors turning a batch into tensors.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    #[error("libtorch failed while building the batch tensor: {0}")]
    Torch(#[from] TchError),
    #[error("output kind {0:?} is not a floating kind (use Float, BFloat16 or Half)")]
    Kind(Kind),
    #[error("std must be positive and finite for every channel, got {0:?}")]
    Std([f32; 3]),
}

/// Batch → normalised channels-last tensor on one device, with the
/// normalisation constants already there.
#[derive(Debug)]
pub struct ToTensor {
    device: Device,
    kind: Kind,
    /// `1 / (255 std)` and `-mean / std`, shape `[1, 3, 1, 1]`, f32 on `device`.
    scale: Tensor,
    bias: Tensor,
}

impl ToTensor {
    /// Normalises as `(x / 255 - mean) / std` per channel into `kind`.
    pub fn new(
        device: Device,
        mean: [f32; 3],
        std: [f32; 3],
        kind: Kind,
    ) -> Result<Self, TensorError> {
        if !matches!(
            kind,
            Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
        ) {
            return Err(TensorError::Kind(kind));
        }
        if std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(TensorError::Std(std));
        }
        let scale: Vec<f32> = std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let bias: Vec<f32> = mean.iter().zip(&std).map(|(m, s)| -m / s).collect();
        let shape = [1i64, 3, 1, 1];
        Ok(ToTensor {
            device,
            kind,
            scale: Tensor::f_from_slice(&scale)?
                .f_view(shape)?
                .f_to_device(device)?,
            bias: Tensor::f_from_slice(&bias)?
                .f_view(shape)?
                .f_to_device(device)?,
        })
    }

    /// The device tensors go to.
    pub fn device(&self) -> Device {
        self.device
    }

    /// The batch's u8 images as a `[n, 3, h, w]` u8 tensor on the device,
    /// channels-last strides (not normalised).
    pub fn images_u8(&self, batch: &Batch) -> Result<Tensor, TensorError> {
        let [n, h, w, c] = batch.shape_nhwc().map(|d| d as i64);
        let bytes = batch.images();
        // SAFETY: `bytes` is `n*h*w*c` u8 values, alive and unchanged for the
        // duration of this call (the batch is borrowed). `host` is a view of
        // it that never escapes: `to_device` + the copy below produce a tensor
        // with its own storage before we return.
        let host = unsafe {
            Tensor::f_from_blob(
                bytes.as_ptr(),
                &[n, h, w, c],
                &[h * w * c, w * c, c, 1],
                Kind::Uint8,
                Device::Cpu,
            )?
        };
        let nchw = host.f_permute([0, 3, 1, 2])?;
        // Own the data: on another device the upload is the copy; on the CPU
        // copy explicitly (the blob belongs to the ring slot).
        let owned = if self.device == Device::Cpu {
            let dst = nchw.f_empty_like()?;
            let mut dst = dst;
            dst.f_copy_(&nchw)?;
            dst
        } else {
            nchw.f_to_device(self.device)?
        };
        Ok(owned)
    }

    /// The batch's images, normalised, as `[n, 3, h, w]` in the chosen kind on
    /// the device, channels-last strides.
    pub fn images(&self, batch: &Batch) -> Result<Tensor, TensorError> {
        let [n, h, w, c] = batch.shape_nhwc().map(|d| d as i64);
        let bytes = batch.images();
        // SAFETY: as in `images_u8`; here the first op that reads the blob on
        // the CPU (`to_kind`) or the upload allocates the tensor we keep.
        let host = unsafe {
            Tensor::f_from_blob(
                bytes.as_ptr(),
                &[n, h, w, c],
                &[h * w * c, w * c, c, 1],
                Kind::Uint8,
                Device::Cpu,
            )?
        };
        let nchw = host.f_permute([0, 3, 1, 2])?;
        let on_device = nchw.f_to_device(self.device)?;
        let mut x = on_device.f_to_kind(Kind::Float)?;
        let _ = x.f_mul_(&self.scale)?;
        let _ = x.f_add_(&self.bias)?;
        if self.kind == Kind::Float {
            Ok(x)
        } else {
            Ok(x.f_to_kind(self.kind)?)
        }
    }

    /// The batch's labels as an int64 `[n]` tensor on the device.
    pub fn labels(&self, batch: &Batch) -> Result<Tensor, TensorError> {
        let labels: Vec<i64> = batch.labels().iter().map(|&l| l as i64).collect();
        Ok(Tensor::f_from_slice(&labels)?.f_to_device(self.device)?)
    }
}

/// One-shot form of [`ToTensor::images`].
pub fn to_tensor(
    batch: &Batch,
    device: Device,
    mean: [f32; 3],
    std: [f32; 3],
    kind: Kind,
) -> Result<Tensor, TensorError> {
    ToTensor::new(device, mean, std, kind)?.images(batch)
}

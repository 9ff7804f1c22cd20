//! `brigade predict --weights W IMAGE... [--json]`: top-5 classes per image
//! with eval preprocessing (shorter side to size·ratio, centre crop, ImageNet
//! mean/std). W is a brigade checkpoint (folder, run folder or its
//! `model.safetensors`), or a raw weights file with `--arch NAME --num-classes N`.
//! A folder among the images stands for the image files under it (sorted); an
//! image that cannot be read gets an error entry, the others are still
//! classified, and the command then fails naming how many failed.

use anyhow::{bail, Context};
use serde::Serialize;
use std::path::{Path, PathBuf};
use tch::Tensor;

use crate::config::DeviceChoice;
use crate::model::Net;
use crate::{checkpoint, data, pipeline};

/// Arguments of `brigade predict`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Brigade checkpoint (folder or model.safetensors) or raw weights (with --arch)
    #[arg(long)]
    pub weights: PathBuf,
    /// Images to classify (a folder: every image file under it)
    #[arg(required = true)]
    pub images: Vec<PathBuf>,
    /// One JSON array on stdout
    #[arg(long)]
    pub json: bool,
    /// Architecture of raw weights
    #[arg(long)]
    pub arch: Option<String>,
    /// Classes of raw weights
    #[arg(long)]
    pub num_classes: Option<u32>,
    /// Class names, one a line (raw weights)
    #[arg(long)]
    pub classes: Option<PathBuf>,
    /// Crop side (default: the checkpoint's, 224 for raw weights)
    #[arg(long)]
    pub size: Option<u32>,
    /// Classes listed per image
    #[arg(long, default_value = "5")]
    pub top: usize,
    /// cpu, cuda or auto
    #[arg(long, default_value = "auto")]
    pub device: DeviceChoice,
}

/// One class of one image's answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct Guess {
    pub class: u32,
    pub label: String,
    pub prob: f64,
}

/// One image's answer.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ImagePrediction {
    pub image: String,
    /// Best classes first (empty when `error` is set).
    pub top: Vec<Guess>,
    /// Why this image could not be classified (unreadable, not an image...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The images to classify: files as given, folders expanded to the image
/// files under them (by extension, sorted, hidden entries skipped).
fn expand_images(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("reading the folder {}", dir.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("reading the folder {}", dir.display()))?;
        entries.sort();
        for p in entries {
            let hidden = p
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if p.is_dir() {
                walk(&p, out)?;
            } else if p
                .extension()
                .and_then(|e| e.to_str())
                .and_then(brigade_index::ImageFormat::from_extension)
                .is_some()
            {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let before = out.len();
            walk(p, &mut out)?;
            if out.len() == before {
                bail!("{}: no image files in this folder", p.display());
            }
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

struct Loaded {
    _vs: tch::nn::VarStore,
    net: Box<dyn Net>,
    classes: Vec<String>,
    size: u32,
    ratio: f64,
}

fn load(args: &Args, device: tch::Device) -> anyhow::Result<Loaded> {
    let w = &args.weights;
    let ckpt_dir = if w.is_dir() {
        Some(checkpoint::find_model_dir(w)?)
    } else if w.file_name().is_some_and(|n| n == "model.safetensors")
        && w.with_file_name("meta.json").is_file()
    {
        w.parent().map(Path::to_path_buf)
    } else {
        None
    };
    if let Some(dir) = ckpt_dir {
        let (vs, net, meta) = crate::model::from_checkpoint(&dir, device)?;
        return Ok(Loaded {
            _vs: vs,
            net,
            classes: meta.classes,
            size: args.size.unwrap_or(meta.eval_size),
            ratio: meta.resize_ratio,
        });
    }
    // Raw weights: the architecture and class count come from the flags, or
    // from the file's own tensors.
    let identified = if args.arch.is_none() || args.num_classes.is_none() {
        let identified = brigade_zoo::read_state_dict(w)
            .map_err(anyhow::Error::from)
            .and_then(|sd| super::weights::identify(w, &sd));
        Some(identified.with_context(|| {
            format!(
                "{}: not a brigade checkpoint, and --arch / --num-classes not given",
                w.display()
            )
        })?)
    } else {
        None
    };
    let arch = match (&args.arch, &identified) {
        (Some(a), _) => a.clone(),
        (None, Some(id)) => id.arch.name().to_string(),
        (None, None) => bail!("raw weights need --arch NAME"),
    };
    let n = match (args.num_classes, identified.and_then(|id| id.num_classes)) {
        (Some(n), _) => n,
        (None, Some(n)) => u32::try_from(n).context("class count out of range")?,
        (None, None) => bail!(
            "{}: the file has no classifier; pass --num-classes N",
            w.display()
        ),
    };
    let classes = match &args.classes {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            let names: Vec<String> = text
                .lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect();
            if names.len() != n as usize {
                bail!(
                    "{}: {} class names for --num-classes {n}",
                    p.display(),
                    names.len()
                );
            }
            names
        }
        None => (0..n).map(|i| i.to_string()).collect(),
    };
    let mut vs = tch::nn::VarStore::new(device);
    let net = crate::model::build(&vs.root(), &arch, 32, n, crate::config::HeadChoice::Linear)?;
    if arch == "tiny_cnn" {
        crate::checkpoint::load_vars(&mut vs, w)?;
    } else {
        // torchvision .pth / timm .safetensors, names mapped by the zoo; strict on the body
        let summary = net.load_pretrained(&vs, w)?;
        eprintln!("{}: {summary}", w.display());
    }
    Ok(Loaded {
        _vs: vs,
        net,
        classes,
        size: args.size.unwrap_or(224),
        ratio: 256.0 / 224.0,
    })
}

/// Predicts the top classes of images.
pub fn predict(args: &Args) -> anyhow::Result<Vec<ImagePrediction>> {
    let device = super::train::resolve_device(args.device)?;
    let m = load(args, device)?;
    let _g = tch::no_grad_guard();
    let mut out = Vec::new();
    for img in expand_images(&args.images)? {
        let px = match pipeline::decode_eval(&img, m.size, m.ratio) {
            Ok(px) => px,
            Err(e) => {
                out.push(ImagePrediction {
                    image: img.display().to_string(),
                    top: Vec::new(),
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let s = m.size as usize;
        let xs = data::normalise(
            &px,
            1,
            s,
            s,
            device,
            data::IMAGENET_MEAN,
            data::IMAGENET_STD,
        )?;
        let p: Tensor = m
            .net
            .forward_t(&xs, false)
            .f_softmax(-1, tch::Kind::Float)?;
        let k = (args.top as i64).clamp(1, m.classes.len().max(1) as i64);
        let (vals, idx) = p.f_topk(k, 1, true, true)?;
        let mut top = Vec::new();
        for j in 0..k {
            let c = idx.f_int64_value(&[0, j])? as u32;
            top.push(Guess {
                class: c,
                label: m.classes.get(c as usize).cloned().unwrap_or_default(),
                prob: vals.f_double_value(&[0, j])?,
            });
        }
        out.push(ImagePrediction {
            image: img.display().to_string(),
            top,
            error: None,
        });
    }
    Ok(out)
}

/// `brigade predict`.
pub fn run(args: Args) -> anyhow::Result<()> {
    let preds = predict(&args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&preds)?);
    } else {
        for p in &preds {
            println!("{}", p.image);
            if let Some(e) = &p.error {
                println!("  error: {e}");
            }
            for (i, g) in p.top.iter().enumerate() {
                println!(
                    "  {}. {} (class {}) {:.2}%",
                    i + 1,
                    g.label,
                    g.class,
                    100.0 * g.prob
                );
            }
        }
    }
    let failed = preds.iter().filter(|p| p.error.is_some()).count();
    if failed > 0 {
        bail!(
            "{failed} of {} images could not be classified (see their errors above)",
            preds.len()
        );
    }
    Ok(())
}

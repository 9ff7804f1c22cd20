//! Model API without the Python oracle: names, heads, layer groups,
//! freezing, checkpoints, the weights registry.

use brigade_zoo::{Arch, HeadKind, Model, ModelOptions, ZooError};
use tch::nn::{ModuleT, VarStore};
use tch::{Device, Kind, Tensor};

fn build(arch: Arch, classes: i64, head: HeadKind) -> (VarStore, Model) {
    let vs = VarStore::new(Device::Cpu);
    let m = Model::new(&vs.root(), arch, classes, head).unwrap();
    (vs, m)
}

#[test]
fn names_round_trip() {
    for a in Arch::ALL {
        assert_eq!(a.to_string().parse::<Arch>().unwrap(), a);
    }
    assert_eq!(
        "EfficientNet-B0".parse::<Arch>().unwrap(),
        Arch::EfficientnetB0
    );
    assert!(matches!(
        "resnet51".parse::<Arch>(),
        Err(ZooError::UnknownArch(..))
    ));
    for h in [
        HeadKind::Linear,
        HeadKind::Fastai { bn_final: false },
        HeadKind::Fastai { bn_final: true },
    ] {
        assert_eq!(h.to_string().parse::<HeadKind>().unwrap(), h);
    }
    assert!("mlp".parse::<HeadKind>().is_err());
}

#[test]
fn bad_configuration_is_an_error() {
    let vs = VarStore::new(Device::Cpu);
    assert!(matches!(
        Model::new(&vs.root(), Arch::Resnet18, 0, HeadKind::Linear),
        Err(ZooError::Config(_))
    ));
    let opts = ModelOptions {
        dropout: Some(1.5),
        drop_path: None,
    };
    assert!(Model::with_options(&vs.root(), Arch::Resnet18, 3, HeadKind::Linear, opts).is_err());
}

#[test]
fn shapes_features_and_heads() {
    // The linear heads are covered by the parity tests.
    for arch in Arch::ALL {
        {
            let head = HeadKind::Fastai { bn_final: true };
            let (_vs, m) = build(arch, 4, head);
            let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
            let f = tch::no_grad(|| m.features_t(&x, false));
            assert_eq!(f.size()[..2], [2, arch.num_features()], "{arch}");
            let y = tch::no_grad(|| m.forward_t(&x, true));
            assert_eq!(y.size(), vec![2, 4], "{arch} {head}");
            assert!(y.isfinite().all().int64_value(&[]) == 1, "{arch} {head}");
        }
    }
}

#[test]
fn layer_groups_partition_the_parameters() {
    let cases = Arch::ALL.map(|a| (a, HeadKind::Linear)).into_iter().chain([
        (Arch::Resnet18, HeadKind::Fastai { bn_final: false }),
        (Arch::MobilenetV3Large, HeadKind::Fastai { bn_final: true }),
    ]);
    for (arch, head) in cases {
        {
            let (vs, m) = build(arch, 3, head);
            let groups = m.layer_groups();
            assert_eq!(
                groups.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
                ["body0", "body1", "head"]
            );
            for (name, _) in vs.variables() {
                let n = groups.iter().filter(|g| g.contains(&name)).count();
                assert_eq!(n, 1, "{arch}: {name} is in {n} groups");
            }
            let grouped = m.grouped_parameters(&vs);
            let total: usize = grouped.iter().map(|(_, v)| v.len()).sum();
            assert_eq!(total, vs.trainable_variables().len(), "{arch}");
            assert!(
                grouped.iter().all(|(_, v)| !v.is_empty()),
                "{arch}: empty group"
            );
        }
    }
    // The prefix match is by whole components: features.1 does not take features.10.
    let (_vs, m) = build(Arch::MobilenetV3Large, 3, HeadKind::Linear);
    assert_eq!(m.group_of("features.1.block.0.0.weight"), Some(0));
    assert_eq!(m.group_of("features.10.block.0.0.weight"), Some(1));
    assert_eq!(m.group_of("classifier.3.bias"), Some(2));
    assert_eq!(m.group_of("nonsense.weight"), None);
    let (_vs, m) = build(Arch::Resnet50, 3, HeadKind::Linear);
    assert_eq!(m.group_of("layer2.3.bn3.weight"), Some(0));
    assert_eq!(m.group_of("layer3.0.downsample.0.weight"), Some(1));
    assert_eq!(m.group_of("fc.weight"), Some(2));
}

#[test]
fn freeze_keeps_head_and_batchnorm_trainable() {
    let (vs, m) = build(Arch::Resnet18, 5, HeadKind::Fastai { bn_final: false });
    m.freeze(&vs);
    let vars = vs.variables();
    assert!(!vars["conv1.weight"].requires_grad());
    assert!(!vars["layer3.1.conv2.weight"].requires_grad());
    assert!(vars["layer3.1.bn2.weight"].requires_grad());
    assert!(vars["bn1.bias"].requires_grad());
    assert!(vars["head.4.weight"].requires_grad());
    assert!(vars["head.2.weight"].requires_grad());
    // Gradients flow only where trainable.
    let x = Tensor::randn([2, 3, 32, 32], (Kind::Float, Device::Cpu));
    m.forward_t(&x, true).sum(Kind::Float).backward();
    assert!(!vars["conv1.weight"].grad().defined());
    assert!(vars["head.8.weight"].grad().defined());
    assert!(vars["layer1.0.bn1.weight"].grad().defined());
    m.unfreeze(&vs);
    assert!(vs
        .variables()
        .iter()
        .filter(|(n, _)| !n.contains("running_"))
        .all(|(_, t)| t.requires_grad()));
}

#[test]
fn checkpoint_round_trip_and_metadata_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ckpt.safetensors");
    let (vs, m) = build(Arch::EfficientnetB0, 6, HeadKind::Fastai { bn_final: true });
    // Move the running statistics away from their init so they are checked too.
    let x = Tensor::randn([4, 3, 32, 32], (Kind::Float, Device::Cpu));
    let _ = tch::no_grad(|| m.forward_t(&x, true));
    m.save_safetensors(&vs, &path, &[("epoch", "3")]).unwrap();
    let meta = brigade_zoo::read_checkpoint_meta(&path).unwrap();
    assert_eq!(
        (meta.arch, meta.num_classes, meta.head),
        (Arch::EfficientnetB0, 6, HeadKind::Fastai { bn_final: true })
    );
    assert_eq!(meta.extra.get("epoch").map(String::as_str), Some("3"));

    let (vs2, m2) = build(Arch::EfficientnetB0, 6, HeadKind::Fastai { bn_final: true });
    m2.load_checkpoint(&vs2, &path).unwrap();
    let y1 = tch::no_grad(|| m.forward_t(&x, false));
    let y2 = tch::no_grad(|| m2.forward_t(&x, false));
    assert_eq!((y1 - y2).abs().max().double_value(&[]), 0.0);

    let (vs3, m3) = build(Arch::EfficientnetB0, 7, HeadKind::Fastai { bn_final: true });
    match m3.load_checkpoint(&vs3, &path) {
        Err(ZooError::Metadata { key, .. }) => assert_eq!(key, "brigade.num_classes"),
        other => panic!("expected a metadata error, got {other:?}"),
    }
    let (vs4, m4) = build(Arch::Resnet18, 6, HeadKind::Fastai { bn_final: true });
    assert!(matches!(
        m4.load_checkpoint(&vs4, &path),
        Err(ZooError::Metadata { .. })
    ));
    // No temp file is left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn registry_and_resolution() {
    let dir = tempfile::tempdir().unwrap();
    for k in brigade_zoo::known_weights() {
        assert!(k.url.ends_with(".pth") || k.url.ends_with(".safetensors"));
        if let Some(p) = k.sha256_prefix {
            assert!(k.file_name.contains(&format!("-{p}.")), "{}", k.name);
        }
        match brigade_zoo::resolve_weights_in(k.name, dir.path()) {
            Err(ZooError::NotDownloaded { name, .. }) => assert_eq!(name, k.name),
            other => panic!("{}: {other:?}", k.name),
        }
    }
    assert!(brigade_zoo::find_known("RESNET50").is_some());
    let f = dir.path().join("resnet50-11ad3fa6.pth");
    std::fs::write(&f, b"x").unwrap();
    assert_eq!(
        brigade_zoo::resolve_weights_in("resnet50", dir.path()).unwrap(),
        f
    );
    // A path is always accepted, a name that is neither is an error.
    assert_eq!(
        brigade_zoo::resolve_weights_in(f.to_str().unwrap(), dir.path()).unwrap(),
        f
    );
    assert!(matches!(
        brigade_zoo::resolve_weights_in("nope", dir.path()),
        Err(ZooError::UnknownWeights(_))
    ));
    // The checksum check uses the published prefix.
    let k = brigade_zoo::find_known("resnet50").unwrap();
    assert!(matches!(k.verify(&f), Err(ZooError::Checksum { .. })));
}

#[test]
fn bad_inputs_are_errors_naming_the_problem_not_panics() {
    let (_vs, m) = build(Arch::Resnet18, 5, HeadKind::Fastai { bn_final: false });
    let err = |xs: &Tensor, train: bool| match m.try_forward_t(xs, train) {
        Err(ZooError::BadInput { arch, problem }) => {
            assert_eq!(arch, "resnet18");
            problem
        }
        other => panic!("expected BadInput, got {other:?}"),
    };
    let f = tch::kind::FLOAT_CPU;
    assert!(err(&Tensor::zeros([3, 32, 32], f), false).contains("4-D"));
    assert!(err(&Tensor::zeros([2, 32, 32, 3], f), false).contains("3 channels"));
    assert!(err(&Tensor::zeros([0, 3, 32, 32], f), false).contains("empty"));
    assert!(err(&Tensor::zeros([1, 3, 32, 32], f), true).contains("at least 2"));
    let bytes = Tensor::zeros([2, 3, 32, 32], (Kind::Uint8, Device::Cpu));
    assert!(err(&bytes, false).contains("floating-point"));
    // Passes the shape checks but libtorch refuses it (f64 input, f32
    // weights): its message comes back as an error.
    let doubles = Tensor::zeros([2, 3, 32, 32], (Kind::Double, Device::Cpu));
    assert!(!err(&doubles, false).is_empty());
    // A good batch goes through, in both modes.
    let ok = m
        .try_forward_t(&Tensor::zeros([2, 3, 32, 32], f), true)
        .unwrap();
    assert_eq!(ok.size(), [2, 5]);
    let ok = m
        .try_forward_t(&Tensor::zeros([1, 3, 40, 33], f), false)
        .unwrap();
    assert_eq!(ok.size(), [1, 5]);
}

#[test]
fn timm_names_we_cannot_map_get_a_hint() {
    // timm's mobilenetv3_large_100 names (conv_stem, blocks.*, conv_head):
    // nothing fits torchvision's mobilenet_v3_large, and the error says what
    // is supported instead of only listing names.
    let (vs, m) = build(Arch::MobilenetV3Large, 1000, HeadKind::Linear);
    let sd = vec![
        (
            "conv_stem.weight".to_string(),
            Tensor::zeros([16, 3, 3, 3], (Kind::Float, Device::Cpu)),
        ),
        (
            "blocks.0.0.conv_dw.weight".to_string(),
            Tensor::zeros([16, 1, 3, 3], (Kind::Float, Device::Cpu)),
        ),
    ];
    let path = std::path::Path::new("mobilenetv3_large_100.safetensors");
    let err = m
        .load_state_dict(&vs, sd, path, brigade_zoo::LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no key matches"), "{err}");
    assert!(err.contains("timm's EfficientNet/MobileNet names"), "{err}");
    assert!(err.contains("mobilenetv3_large_100.safetensors"), "{err}");
}

#[test]
fn architecture_and_classes_are_identified_from_the_tensors() {
    for (arch, classes) in [
        (Arch::Resnet18, 7),
        (Arch::Resnet34, 1000),
        (Arch::Resnet50, 101),
        (Arch::Resnet50d, 3),
        (Arch::EfficientnetB0, 12),
        (Arch::EfficientnetB2, 5),
        (Arch::MobilenetV3Large, 9),
    ] {
        let (vs, _m) = build(arch, classes, HeadKind::Linear);
        let mut sd: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(k, t)| (format!("module.{k}"), t))
            .collect();
        sd.sort_by(|a, b| a.0.cmp(&b.0));
        let id = brigade_zoo::identify_state_dict(&sd)
            .unwrap_or_else(|| panic!("{arch}: not identified"));
        assert_eq!((id.arch, id.num_classes), (arch, Some(classes)), "{arch}");
        // a headless backbone: identified, no class count
        let head = if matches!(arch, Arch::EfficientnetB0 | Arch::EfficientnetB2) {
            "module.classifier.1."
        } else if arch == Arch::MobilenetV3Large {
            "module.classifier.3."
        } else {
            "module.fc."
        };
        sd.retain(|(k, _)| !k.starts_with(head));
        let id = brigade_zoo::identify_state_dict(&sd).unwrap();
        assert_eq!((id.arch, id.num_classes), (arch, None), "{arch} headless");
        // a missing body tensor: nothing fits
        let (removed, _) = sd.remove(0);
        assert!(!removed.starts_with(head), "{removed}");
        assert_eq!(
            brigade_zoo::identify_state_dict(&sd),
            None,
            "{arch} damaged"
        );
    }
}

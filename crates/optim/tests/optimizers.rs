//! Behaviour tests: checkpoints continue bit-identically, groups from a VarStore, frozen
//! parameters, the Ranger warm-up aliasing bug.

use brigade_optim::{
    groups_from_prefixes, ranger, single_group, AdamW, AdamWConfig, Error, GroupSpec, Lookahead,
    OptimState, Optimizer, Param, RAdam, RAdamConfig, RangerConfig, Sgd, SgdConfig, WeightDecay,
};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// A small conv + BN + linear model; VarStore names like torchvision's.
fn model(vs: &nn::VarStore) -> impl ModuleT {
    let root = vs.root();
    let conv = nn::conv2d(&root / "conv1", 3, 4, 3, Default::default());
    let bn = nn::batch_norm2d(&root / "bn1", 4, Default::default());
    let fc = nn::linear(&root / "fc", 4, 3, Default::default());
    nn::func_t(move |x, train| {
        x.apply(&conv)
            .apply_t(&bn, train)
            .relu()
            .mean_dim(&[2i64, 3][..], false, Kind::Float)
            .apply(&fc)
    })
}

fn batch(step: i64) -> (Tensor, Tensor) {
    // deterministic data per step, independent of the global RNG state
    let x = Tensor::arange(2 * 3 * 6 * 6, (Kind::Float, Device::Cpu)).view([2, 3, 6, 6]);
    let x = ((x * (0.37 + step as f64 * 0.011)).sin() * 2.0).set_requires_grad(false);
    let y = Tensor::from_slice(&[step % 3, (step + 1) % 3]);
    (x, y)
}

fn train_steps(m: &impl ModuleT, opt: &mut dyn Optimizer, range: std::ops::Range<i64>) {
    for s in range {
        let (x, y) = batch(s);
        opt.zero_grad();
        let loss = m.forward_t(&x, true).cross_entropy_for_logits(&y);
        loss.backward();
        opt.step().unwrap();
    }
}

type Build = fn(Vec<GroupSpec>) -> Box<dyn Optimizer>;

fn builders() -> Vec<(&'static str, Build)> {
    vec![
        ("sgd", |g| {
            Box::new(
                Sgd::new(
                    g,
                    SgdConfig {
                        nesterov: true,
                        weight_decay: 1e-3,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        }),
        ("adamw", |g| {
            Box::new(
                AdamW::new(
                    g,
                    AdamWConfig {
                        lr: 1e-2,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        }),
        ("radam", |g| {
            Box::new(
                RAdam::new(
                    g,
                    RAdamConfig {
                        lr: 1e-2,
                        weight_decay: 1e-2,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        }),
        ("ranger", |g| {
            Box::new(
                ranger(
                    g,
                    RangerConfig {
                        lr: 1e-2,
                        weight_decay: 1e-2,
                        ..Default::default()
                    },
                )
                .unwrap(),
            )
        }),
    ]
}

fn vars(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    brigade_optim::named_variables(vs)
}

#[test]
fn save_and_restore_mid_run_is_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    for (name, build) in builders() {
        tch::manual_seed(7);
        let vs_a = nn::VarStore::new(Device::Cpu);
        let ma = model(&vs_a);
        let mut vs_b = nn::VarStore::new(Device::Cpu);
        let mb = model(&vs_b);
        vs_b.copy(&vs_a).unwrap();

        // A: 20 steps straight
        let mut oa = build(single_group(&vs_a));
        train_steps(&ma, oa.as_mut(), 0..20);

        // B: 10 steps, save, a fresh optimizer loads, 10 more
        let mut ob = build(single_group(&vs_b));
        train_steps(&mb, ob.as_mut(), 0..10);
        let path = dir.path().join(format!("{name}.safetensors"));
        ob.save(&path).unwrap();
        assert!(path.with_extension("json").is_file());
        drop(ob);
        let mut ob = build(single_group(&vs_b));
        ob.load(&path).unwrap();
        train_steps(&mb, ob.as_mut(), 10..20);

        for ((na, ta), (nb, tb)) in vars(&vs_a).iter().zip(vars(&vs_b).iter()) {
            assert_eq!(na, nb);
            assert!(ta.equal(tb), "{name}: `{na}` differs after save/restore");
        }
        // and the run did move the weights
        assert!(ob.groups()[0].params.iter().any(|p| p
            .tensor
            .abs()
            .sum(Kind::Float)
            .double_value(&[])
            > 0.0));
    }
}

#[test]
fn state_of_another_kind_or_model_is_refused() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = model(&vs);
    let adam = AdamW::new(single_group(&vs), AdamWConfig::default()).unwrap();
    let mut sgd = Sgd::new(single_group(&vs), SgdConfig::default()).unwrap();
    let err = sgd
        .load_state_dict(&adam.state_dict().unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::StateMismatch(_)), "{err}");

    let vs2 = nn::VarStore::new(Device::Cpu);
    let _l = nn::linear(vs2.root() / "other", 2, 2, Default::default());
    let mut adam2 = AdamW::new(single_group(&vs2), AdamWConfig::default()).unwrap();
    let err = adam2
        .load_state_dict(&adam.state_dict().unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("differ"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.safetensors");
    let err = OptimState::load(&missing).unwrap_err();
    assert!(err.to_string().contains("nope.safetensors"), "{err}");
}

#[test]
fn groups_from_prefixes_and_decay_rule() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = model(&vs);
    let prefixes = vec![
        vec!["conv1".to_string(), "bn1".to_string()],
        vec!["fc".to_string()],
    ];
    let groups = groups_from_prefixes(&vs, &prefixes).unwrap();
    let names = |g: &GroupSpec| g.params.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
    // running stats are buffers: not optimised
    assert_eq!(
        names(&groups[0]),
        ["bn1.bias", "bn1.weight", "conv1.bias", "conv1.weight"]
    );
    assert_eq!(names(&groups[1]), ["fc.bias", "fc.weight"]);
    for g in &groups {
        for p in &g.params {
            assert_eq!(
                p.decay,
                p.name.ends_with("conv1.weight") || p.name == "fc.weight",
                "{}",
                p.name
            );
        }
    }
    // a prefix must match at a `.` boundary; unmatched parameters are an error
    let err = groups_from_prefixes(&vs, &[vec!["conv".to_string()]]).unwrap_err();
    match err {
        Error::Unassigned { names } => assert!(
            names.contains(&"fc.weight".to_string()) && names.contains(&"conv1.weight".to_string())
        ),
        e => panic!("unexpected {e}"),
    }

    // weight decay skips dim <= 1: with zero gradients AdamW only decays conv1/fc weights
    let mut opt = AdamW::new(
        groups,
        AdamWConfig {
            lr: 0.1,
            weight_decay: 0.5,
            ..Default::default()
        },
    )
    .unwrap();
    let before: Vec<(String, Tensor)> = vars(&vs).into_iter().map(|(n, t)| (n, t.copy())).collect();
    for g in opt.groups() {
        for p in &g.params {
            (&p.tensor * 0.0).sum(Kind::Float).backward();
        }
    }
    opt.step().unwrap();
    for (n, t) in vars(&vs) {
        let b = &before.iter().find(|(bn, _)| *bn == n).unwrap().1;
        let changed = !t.equal(b);
        let decays = n == "conv1.weight" || n == "fc.weight";
        assert_eq!(changed, decays, "{n}");
        if decays {
            // p *= 1 - lr * wd exactly (the Adam step is 0 for a zero gradient)
            let expect = b * (1.0 - 0.1 * 0.5);
            assert!(t.allclose(&expect, 1e-6, 1e-7, false), "{n}");
        }
    }
}

#[test]
fn frozen_parameters_are_skipped_and_resume_after_unfreeze() {
    tch::manual_seed(3);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let m = model(&vs);
    let mut opt = ranger(
        single_group(&vs),
        RangerConfig {
            lr: 1e-2,
            ..Default::default()
        },
    )
    .unwrap();
    train_steps(&m, &mut opt, 0..3);
    let snap: Vec<Tensor> = vars(&vs).iter().map(|(_, t)| t.copy()).collect();
    let st_before = opt.state_dict().unwrap();
    vs.freeze();
    // frozen: a step (grads from before still there) changes nothing
    opt.step().unwrap();
    for ((n, t), s) in vars(&vs).iter().zip(&snap) {
        assert!(t.equal(s), "{n} moved while frozen");
    }
    let st_after = opt.state_dict().unwrap();
    assert_eq!(
        st_before.meta, st_after.meta,
        "state counters moved while frozen"
    );
    for ((n, a), (_, b)) in st_before.tensors.iter().zip(&st_after.tensors) {
        assert!(a.equal(b), "{n} state moved while frozen");
    }
    vs.unfreeze();
    train_steps(&m, &mut opt, 3..4);
    let moved = vars(&vs).iter().zip(&snap).any(|((_, t), s)| !t.equal(s));
    assert!(moved, "unfrozen parameters did not move");
}

#[test]
fn ranger_warmup_does_not_corrupt_the_first_moment() {
    // The published Ranger: during warm-up (N_sma <= 5) `G_grad = exp_avg` aliases the
    // first-moment buffer, then `G_grad.add_(wd, p)` writes weight decay into exp_avg.
    // Here exp_avg must be exactly the EMA of the (centred) gradients.
    let p = Tensor::from_slice(&[1.0f64, -2.0, 3.0, 0.5])
        .view([2, 2])
        .set_requires_grad(true);
    let grads = [
        [0.1f64, 0.2, -0.3, 0.4],
        [0.0, -0.1, 0.2, 0.05],
        [0.3, 0.3, -0.1, 0.0],
    ];
    let mut opt = ranger(
        vec![GroupSpec::new("g", vec![Param::new("w", &p)])],
        RangerConfig {
            weight_decay: 0.1,
            gradient_centralization: false,
            ..Default::default()
        },
    )
    .unwrap();
    let mut m = [0.0f64; 4];
    let mut expect_p = [1.0f64, -2.0, 3.0, 0.5];
    for (t, g) in grads.into_iter().enumerate() {
        let gt = Tensor::from_slice(&g).view([2, 2]);
        let mut p2 = p.shallow_clone();
        p2.zero_grad();
        (&p * &gt).sum(Kind::Double).backward();
        opt.step().unwrap();
        for (mi, gi) in m.iter_mut().zip(g) {
            *mi = 0.95 * *mi + 0.05 * gi;
        }
        // warm-up step: p -= lr / bc1 * (m + wd * p)
        let c = 1e-3 / (1.0 - 0.95f64.powi(t as i32 + 1));
        for (pj, mj) in expect_p.iter_mut().zip(m) {
            *pj -= c * (mj + 0.1 * *pj);
        }
    }
    let st = opt.state_dict().unwrap();
    let exp_avg = st.tensor("w.exp_avg").unwrap().view([-1]);
    for (j, mj) in m.iter().enumerate() {
        let got = exp_avg.double_value(&[j as i64]);
        assert!(
            (got - mj).abs() < 1e-12,
            "exp_avg[{j}] = {got}, expected {mj} (weight decay leaked in?)"
        );
    }
    for (j, pj) in expect_p.iter().enumerate() {
        let got = p.view([-1]).double_value(&[j as i64]);
        assert!((got - pj).abs() < 1e-12, "p[{j}] = {got}, expected {pj}");
    }
}

#[test]
fn lookahead_syncs_every_k_steps() {
    // plain SGD (lr 1, no momentum) on a constant gradient 1: fast weights go -1 per step;
    // at step k they are pulled halfway back to the slow weights (initial value 0).
    let p = Tensor::zeros([1], (Kind::Double, Device::Cpu)).set_requires_grad(true);
    let sgd = Sgd::new(
        vec![GroupSpec::new("g", vec![Param::new("w", &p)])],
        SgdConfig {
            lr: 1.0,
            momentum: 0.0,
            ..Default::default()
        },
    )
    .unwrap();
    let mut opt = Lookahead::new(sgd, 3, 0.5).unwrap();
    let mut seen = Vec::new();
    for _ in 0..6 {
        let mut p2 = p.shallow_clone();
        p2.zero_grad();
        p.sum(Kind::Double).backward();
        opt.step().unwrap();
        seen.push(p.double_value(&[0]));
    }
    // slow 0 -> step 3: fast -3, slow = 0 + 0.5 * (-3) = -1.5; step 6: fast -4.5, slow -3
    assert_eq!(seen, vec![-1.0, -2.0, -1.5, -2.5, -3.5, -3.0]);
}

#[test]
fn bad_hyper_parameters_are_errors() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _m = model(&vs);
    assert!(matches!(
        Sgd::new(
            single_group(&vs),
            SgdConfig {
                nesterov: true,
                dampening: 0.5,
                ..Default::default()
            }
        ),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        AdamW::new(
            single_group(&vs),
            AdamWConfig {
                eps: 0.0,
                ..Default::default()
            }
        ),
        Err(Error::Config(_))
    ));
    assert!(matches!(
        AdamW::new(
            single_group(&vs),
            AdamWConfig {
                betas: (0.9, 1.0),
                ..Default::default()
            }
        ),
        Err(Error::Config(_))
    ));
    let mut opt = RAdam::new(
        single_group(&vs),
        RAdamConfig {
            decay_mode: WeightDecay::Decoupled,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        opt.set_lr(5, 0.1),
        Err(Error::NoSuchGroup { group: 5, len: 1 })
    ));
    assert!(matches!(opt.set_lr(0, f64::NAN), Err(Error::Config(_))));
    assert!(matches!(opt.set_momentum(0, 1.5), Err(Error::Config(_))));
    let p = Tensor::zeros([2], (Kind::Float, Device::Cpu));
    let dup = vec![
        GroupSpec::new("a", vec![Param::new("x", &p)]),
        GroupSpec::new("b", vec![Param::new("x", &p)]),
    ];
    assert!(matches!(
        AdamW::new(dup, AdamWConfig::default()),
        Err(Error::DuplicateParam(_))
    ));
}

#[test]
fn fused_and_per_tensor_adamw_agree() {
    // Two groups with their own lr and momentum (beta1), decayed and undecayed
    // parameters, and a body frozen for the first steps, so one group holds
    // parameters at different step counts (separate fused calls).
    // Both runs start from one initialisation, copied: other tests running in
    // parallel draw from libtorch's global generator too.
    let init = nn::VarStore::new(Device::Cpu);
    let _ = model(&init);
    let run = |fused: bool| {
        let mut vs = nn::VarStore::new(Device::Cpu);
        let m = model(&vs);
        vs.copy(&init).unwrap();
        let prefixes = vec![
            vec!["conv1".to_string(), "bn1".to_string()],
            vec!["fc".to_string()],
        ];
        let groups = groups_from_prefixes(&vs, &prefixes).unwrap();
        let cfg = AdamWConfig {
            lr: 1e-2,
            weight_decay: 0.1,
            ..Default::default()
        };
        let mut opt = AdamW::new(groups, cfg).unwrap();
        assert!(opt.is_fused(), "CPU float parameters take the fused kernel");
        opt.set_fused(fused).unwrap();
        opt.set_lr(0, 3e-3).unwrap();
        opt.set_momentum(1, 0.8).unwrap();
        let weight = vars(&vs)
            .into_iter()
            .find(|(n, _)| n == "conv1.weight")
            .map(|(_, t)| t)
            .unwrap();
        let _ = weight.set_requires_grad(false);
        train_steps(&m, &mut opt, 0..2);
        let _ = weight.set_requires_grad(true);
        train_steps(&m, &mut opt, 2..6);
        let steps = opt.state_dict().unwrap().meta;
        (vars(&vs), steps)
    };
    let (fused, fused_meta) = run(true);
    let (plain, plain_meta) = run(false);
    assert_eq!(fused_meta, plain_meta, "step counts and groups");
    for ((n, a), (_, b)) in fused.iter().zip(&plain) {
        // conv1's bias feeds batch norm, which cancels it: its gradient is
        // rounding noise (~1e-9), which Adam scales up to steps of +-lr, so any
        // two implementations part there (and in the running mean after it)
        if n == "conv1.bias" || n == "bn1.running_mean" {
            continue;
        }
        let diff = (a - b).abs().max().double_value(&[]);
        assert!(a.allclose(b, 1e-5, 1e-6, false), "{n}: max diff {diff}");
    }
    // and the frozen weight really lagged: 4 steps against the others' 6
    let meta = fused_meta.to_string();
    assert!(meta.contains('4') && meta.contains('6'), "{meta}");
}

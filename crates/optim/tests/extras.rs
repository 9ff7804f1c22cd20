//! Schedules, discriminative LRs, the LR finder, EMA, mixup/cutmix, and the loss/clipping
//! parity with torch.

mod common;

use brigade_optim::clip::{clip_grad_norm, clip_grad_value, Norm};
use brigade_optim::loss::{label_smoothing_ce, MixConfig, Mixer};
use brigade_optim::schedule::{
    apply, lr_slice, lr_slice_hi, FlatCos, OneCycle, Schedule, StepDecay, WarmupCosine,
};
use brigade_optim::{
    lr_find, Ema, Error, GroupSpec, LrFinderConfig, Optimizer, Param, Sgd, SgdConfig,
};
use tch::{Device, Kind, Tensor};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1e-300) + 1e-18
}

fn check(s: &dyn Schedule, it: usize, total: usize, lr: f64, mom: Option<f64>) {
    let (l, m) = s.at(it, total);
    assert!(close(l, lr), "iteration {it}: lr {l:e}, expected {lr:e}");
    match (m, mom) {
        (Some(a), Some(b)) => assert!(close(a, b), "iteration {it}: momentum {a}, expected {b}"),
        (None, None) => {}
        other => panic!("iteration {it}: momentum {other:?}"),
    }
}

#[test]
fn schedules_follow_their_formulas() {
    // one-cycle, lr_max 1e-2, div 25, div_final 1e4, pct_start 0.3, over 100 batches
    let oc = OneCycle::new(1e-2);
    check(&oc, 0, 100, 4e-4, Some(0.95)); // start = lr_max / 25
    check(&oc, 15, 100, (4e-4 + 1e-2) / 2.0, Some(0.90)); // half-way up: cosine midpoint
    check(&oc, 30, 100, 1e-2, Some(0.85)); // peak
    check(&oc, 65, 100, (1e-2 + 4e-8) / 2.0, Some(0.90)); // half-way down
    check(&oc, 100, 100, 4e-8, Some(0.95)); // end = start / 1e4
                                            // 1/4 of the warm-up: start + (1 - cos(pi/4)) / 2 * (peak - start)
    let q = 4e-4 + (1.0 - std::f64::consts::FRAC_1_SQRT_2) / 2.0 * (1e-2 - 4e-4);
    let (l, _) = oc.at(75, 1000);
    assert!((l - q).abs() < 1e-15, "{l} vs {q}");

    let fc = FlatCos::new(1e-3);
    check(&fc, 0, 100, 1e-3, None);
    check(&fc, 71, 100, 1e-3, None);
    check(&fc, 86, 100, (1e-3 + 1e-8) / 2.0, None);
    check(&fc, 100, 100, 1e-8, None);

    let wc = WarmupCosine {
        lr_max: 1.0,
        warmup: 10,
        lr_min: 0.0,
    };
    check(&wc, 0, 110, 0.1, None);
    check(&wc, 9, 110, 1.0, None);
    check(&wc, 10, 110, 1.0, None);
    check(&wc, 60, 110, 0.5, None);
    check(&wc, 110, 110, 0.0, None);

    let sd = StepDecay {
        lr: 1.0,
        gamma: 0.1,
        every: 30,
    };
    check(&sd, 29, 100, 1.0, None);
    check(&sd, 30, 100, 0.1, None);
    check(&sd, 65, 100, 0.01, None);
}

#[test]
fn discriminative_learning_rates() {
    let s = lr_slice(1e-5, 1e-3, 3).unwrap();
    assert_eq!(s.len(), 3);
    for (a, b) in s.iter().zip([1e-5, 1e-4, 1e-3]) {
        assert!(close(*a, b), "{s:?}");
    }
    assert_eq!(lr_slice(1e-5, 1e-3, 1).unwrap(), vec![1e-3]);
    assert!(lr_slice(0.0, 1e-3, 3).is_err());
    assert_eq!(lr_slice_hi(1e-3, 3), vec![1e-4, 1e-4, 1e-3]);

    // apply(): each group follows the schedule scaled to its own peak, momentum to all
    let a = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let b = Tensor::zeros([2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let mut opt = Sgd::new(
        vec![
            GroupSpec::new("body", vec![Param::new("a", &a)]),
            GroupSpec::new("head", vec![Param::new("b", &b)]),
        ],
        SgdConfig::default(),
    )
    .unwrap();
    apply(&mut opt, &OneCycle::new(1e-3), 0, 100, &[1e-4, 1e-3]).unwrap();
    assert!(close(opt.groups()[0].lr, 4e-6) && close(opt.groups()[1].lr, 4e-5));
    assert!(opt.groups().iter().all(|g| close(g.momentum, 0.95)));
    assert!(apply(&mut opt, &OneCycle::new(1e-3), 0, 100, &[1e-4, 1e-3, 1e-2]).is_err());
}

/// Linear regression: loss diverges once lr is large enough.
struct Problem {
    w: Tensor,
    x: Tensor,
    y: Tensor,
}

impl Problem {
    fn new() -> Problem {
        tch::manual_seed(11);
        let x = Tensor::randn([32, 4], (Kind::Float, Device::Cpu));
        let y = x.matmul(&Tensor::from_slice(&[1.0f32, -2.0, 0.5, 3.0]).view([4, 1]));
        let w = Tensor::zeros([4, 1], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        Problem { w, x, y }
    }
    fn step(&self, opt: &mut dyn Optimizer) -> f64 {
        opt.zero_grad();
        let loss = (self.x.matmul(&self.w) - &self.y)
            .pow_tensor_scalar(2)
            .mean(Kind::Float);
        loss.backward();
        opt.step().unwrap();
        loss.double_value(&[])
    }
}

#[test]
fn lr_finder_sweeps_stops_restores_and_plots() {
    let pb = Problem::new();
    let mut opt = Sgd::new(
        vec![GroupSpec::new("w", vec![Param::new("w", &pb.w)])],
        SgdConfig::default(),
    )
    .unwrap();
    // a few real steps first, so there is optimizer state to restore
    for _ in 0..3 {
        pb.step(&mut opt);
    }
    let w_before = pb.w.copy();
    let state_before = opt.state_dict().unwrap();
    let cfg = LrFinderConfig::default();
    let mut seen_lrs = Vec::new();
    let res = lr_find(&mut opt, &[], &cfg, |o: &mut Sgd, lr| {
        assert!(close(o.groups()[0].lr, lr));
        seen_lrs.push(lr);
        Ok::<f64, std::convert::Infallible>(pb.step(o))
    })
    .unwrap();
    // exponential sweep 1e-7 -> 10
    for (i, lr) in res.lrs.iter().enumerate() {
        let want = 1e-7 * (10.0f64 / 1e-7).powf(i as f64 / 99.0);
        assert!((lr - want).abs() <= 1e-12 * want, "lr[{i}] = {lr}");
    }
    assert_eq!(seen_lrs, res.lrs);
    // bias-corrected smoothing
    let mut avg = 0.0;
    for (i, (l, s)) in res.losses.iter().zip(&res.smoothed).enumerate() {
        avg = 0.98 * avg + 0.02 * l;
        let want = avg / (1.0 - 0.98f64.powi(i as i32 + 1));
        assert!(
            (s - want).abs() <= 1e-12 * want.abs().max(1.0),
            "smoothed[{i}]"
        );
    }
    // it diverged before the end and said so
    assert!(
        res.stopped.is_some() && res.lrs.len() < 100,
        "{:?} after {}",
        res.stopped,
        res.lrs.len()
    );
    let last = *res.smoothed.last().unwrap();
    let best = res.smoothed.iter().cloned().fold(f64::INFINITY, f64::min);
    assert!(!last.is_finite() || last > 4.0 * best);
    // suggestions lie inside the sweep, below the divergence point
    let (steep, min10) = (res.steepest.unwrap(), res.min_div10.unwrap());
    let top = *res.lrs.last().unwrap();
    assert!(steep >= 1e-7 && steep < top, "steepest {steep}");
    assert!(min10 >= 1e-8 && min10 < top, "min/10 {min10}");
    // weights and state restored exactly
    assert!(pb.w.equal(&w_before));
    let state_after = opt.state_dict().unwrap();
    assert_eq!(state_before.meta, state_after.meta);
    for ((n, a), (_, b)) in state_before.tensors.iter().zip(&state_after.tensors) {
        assert!(a.equal(b), "{n}");
    }
    // table and plot
    let table = res.table();
    assert!(
        table.contains("suggested lr (steepest descent)") && table.lines().count() > res.lrs.len()
    );
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("lr_find.png");
    let text = res.plot(&png).unwrap();
    assert_eq!(text, brigade_optim::plot::find_font().is_some());
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 2000);
}

#[test]
fn lr_finder_restores_after_a_failing_step() {
    let pb = Problem::new();
    let mut opt = Sgd::new(
        vec![GroupSpec::new("w", vec![Param::new("w", &pb.w)])],
        SgdConfig::default(),
    )
    .unwrap();
    let w_before = pb.w.copy();
    let mut n = 0;
    let err = lr_find(
        &mut opt,
        &[],
        &LrFinderConfig::default(),
        |o: &mut Sgd, _lr| {
            n += 1;
            if n == 5 {
                return Err("data loader broke".to_string());
            }
            Ok(pb.step(o))
        },
    )
    .unwrap_err();
    assert!(matches!(err, Error::Step { iteration: 4, .. }), "{err}");
    assert!(err.to_string().contains("data loader broke"));
    assert!(pb.w.equal(&w_before));
    assert!(close(opt.groups()[0].lr, SgdConfig::default().lr));
}

#[test]
fn ema_with_warmup() {
    let w = Tensor::from_slice(&[1.0f32, 2.0]);
    let c = Tensor::from_slice(&[5i64]);
    let named = vec![
        ("w".to_string(), w.shallow_clone()),
        ("n".to_string(), c.shallow_clone()),
    ];
    let mut ema = Ema::new(&named, 0.9, true).unwrap();
    assert!(close(ema.current_decay(), 0.1)); // min(0.9, 1/10)
    let _ = w.shallow_clone().fill_(3.0);
    let _ = c.shallow_clone().fill_(6);
    ema.update().unwrap();
    // 0.1 * [1, 2] + 0.9 * 3
    let a = ema.averaged();
    assert!(
        (a[0].1.double_value(&[0]) - 2.8).abs() < 1e-6
            && (a[0].1.double_value(&[1]) - 2.9).abs() < 1e-6
    );
    assert_eq!(a[1].1.int64_value(&[0]), 6);
    assert!(close(ema.current_decay(), 2.0 / 11.0));
    for _ in 0..100 {
        ema.update().unwrap();
    }
    assert!(close(ema.current_decay(), 0.9));

    // checkpoint round trip
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ema.safetensors");
    ema.save(&p).unwrap();
    let mut ema2 = Ema::new(&named, 0.5, false).unwrap();
    ema2.load(&p).unwrap();
    assert_eq!(ema2.updates(), 101);
    assert!(ema2.averaged()[0].1.equal(ema.averaged()[0].1));

    // swap puts the average into the model and back
    let _ = w.shallow_clone().fill_(0.0);
    ema.swap().unwrap();
    assert!(w.equal(ema2.averaged()[0].1));
    ema.swap().unwrap();
    assert_eq!(w.double_value(&[0]), 0.0);
}

#[test]
fn mixup_and_cutmix_are_deterministic_and_consistent() {
    let n = 8i64;
    // image i is constant i; label i
    let images = Tensor::arange(n, (Kind::Float, Device::Cpu))
        .view([n, 1, 1, 1])
        .expand([n, 3, 16, 16], false)
        .contiguous();
    let labels = Tensor::arange(n, (Kind::Int64, Device::Cpu));
    let mixup = Mixer::new(
        MixConfig {
            cutmix_alpha: 0.0,
            ..Default::default()
        },
        42,
    )
    .unwrap();
    let a = mixup.mix(3, &images, &labels).unwrap();
    let b = mixup.mix(3, &images, &labels).unwrap();
    assert!(a.images.equal(&b.images) && a.lam == b.lam);
    let c = mixup.mix(4, &images, &labels).unwrap();
    assert!(c.lam != a.lam);
    assert!(a.lam > 0.0 && a.lam < 1.0 && a.cut_box.is_none());
    for i in 0..n {
        let want = a.lam * i as f64 + (1.0 - a.lam) * a.labels_b.int64_value(&[i]) as f64;
        let got = a.images.double_value(&[i, 0, 5, 5]);
        assert!((got - want).abs() < 1e-5, "image {i}: {got} vs {want}");
    }
    // labels_b is a permutation
    let mut perm: Vec<i64> = (0..n).map(|i| a.labels_b.int64_value(&[i])).collect();
    perm.sort();
    assert_eq!(perm, (0..n).collect::<Vec<_>>());

    let cutmix = Mixer::new(
        MixConfig {
            mixup_alpha: 0.0,
            ..Default::default()
        },
        42,
    )
    .unwrap();
    let m = (0..20)
        .map(|s| cutmix.mix(s, &images, &labels).unwrap())
        .find(|m| m.lam < 1.0)
        .unwrap();
    let (y0, y1, x0, x1) = m.cut_box.unwrap();
    assert!((m.lam - (1.0 - ((y1 - y0) * (x1 - x0)) as f64 / 256.0)).abs() < 1e-12);
    for i in 0..n {
        let partner = m.labels_b.int64_value(&[i]) as f64;
        for (y, x) in [(y0, x0), (y1 - 1, x1 - 1), (0, 0), (15, 15)] {
            let inside = y >= y0 && y < y1 && x >= x0 && x < x1;
            let want = if inside { partner } else { i as f64 };
            assert_eq!(
                m.images.double_value(&[i, 1, y, x]),
                want,
                "image {i} at ({y}, {x})"
            );
        }
    }
    // mixed loss = lam * ce(a) + (1 - lam) * ce(b)
    let logits = Tensor::randn([n, 8], (Kind::Float, Device::Cpu));
    let l = m.loss(&logits, 0.1).unwrap().double_value(&[]);
    let la = label_smoothing_ce(&logits, &m.labels_a, 0.1)
        .unwrap()
        .double_value(&[]);
    let lb = label_smoothing_ce(&logits, &m.labels_b, 0.1)
        .unwrap()
        .double_value(&[]);
    assert!((l - (m.lam * la + (1.0 - m.lam) * lb)).abs() < 1e-5);
    // prob 0 never mixes
    let never = Mixer::new(
        MixConfig {
            prob: 0.0,
            ..Default::default()
        },
        1,
    )
    .unwrap();
    assert_eq!(never.mix(0, &images, &labels).unwrap().lam, 1.0);
    assert!(Mixer::new(
        MixConfig {
            mixup_alpha: -1.0,
            ..Default::default()
        },
        1
    )
    .is_err());
}

#[test]
fn label_smoothing_and_clipping_match_torch() {
    tch::manual_seed(5);
    let logits = Tensor::randn([8, 5], (Kind::Float, Device::Cpu)) * 3.0;
    let targets = Tensor::from_slice(&[0i64, 4, 2, 2, 1, 3, 0, 4]);
    let cg: Vec<Tensor> = [&[4i64, 3][..], &[7], &[2, 2, 2]]
        .iter()
        .map(|s| Tensor::randn(*s, (Kind::Float, Device::Cpu)))
        .collect();
    let max_norm = 1.5f32;
    let dir = tempfile::tempdir().unwrap();
    let inp = dir.path().join("in.safetensors");
    let mut named = vec![
        ("logits".to_string(), logits.shallow_clone()),
        ("targets".to_string(), targets.shallow_clone()),
        ("max_norm".to_string(), Tensor::from_slice(&[max_norm])),
    ];
    for (j, g) in cg.iter().enumerate() {
        named.push((format!("cg{j}"), g.shallow_clone()));
    }
    Tensor::write_safetensors(&named, &inp).unwrap();
    let out = dir.path().join("out.safetensors");
    common::run_oracle(&["losses", inp.to_str().unwrap(), out.to_str().unwrap()]);
    let want: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&out)
        .unwrap()
        .into_iter()
        .collect();

    let lg = logits.detach().set_requires_grad(true);
    let loss = label_smoothing_ce(&lg, &targets, 0.1).unwrap();
    loss.backward();
    let rel = |a: &Tensor, b: &Tensor| {
        ((a - b).abs().max().double_value(&[])) / b.abs().max().double_value(&[])
    };
    assert!(
        rel(&loss.view([1]), &want["ls_loss"]) < 1e-6,
        "loss {loss} vs {}",
        want["ls_loss"]
    );
    assert!(rel(&lg.grad(), &want["ls_grad"]) < 1e-5, "gradient");
    let plain = label_smoothing_ce(&logits, &targets, 0.0).unwrap();
    assert!(rel(&plain.view([1]), &want["ce_loss"]) < 1e-6);
    assert!(label_smoothing_ce(&logits, &targets, 1.5).is_err());

    for (tag, norm) in [("l2", Norm::L2), ("inf", Norm::Inf)] {
        let ps: Vec<Tensor> = cg
            .iter()
            .map(|g| Tensor::zeros_like(g).set_requires_grad(true))
            .collect();
        for (p, g) in ps.iter().zip(&cg) {
            (p * g).sum(Kind::Float).backward();
        }
        let total = clip_grad_norm(ps.iter(), max_norm as f64, norm)
            .unwrap()
            .unwrap();
        assert!(
            rel(&total.view([1]), &want[&format!("clip_{tag}_total")]) < 1e-6,
            "{tag} total"
        );
        for (j, p) in ps.iter().enumerate() {
            assert!(
                rel(&p.grad(), &want[&format!("clip_{tag}_{j}")]) < 1e-6,
                "{tag} grad {j}"
            );
        }
    }
    let p = Tensor::zeros([3], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    (&p * Tensor::from_slice(&[-2.0f32, 0.5, 3.0]))
        .sum(Kind::Float)
        .backward();
    clip_grad_value([&p], 1.0).unwrap();
    assert_eq!(
        Vec::<f32>::try_from(p.grad()).unwrap(),
        vec![-1.0, 0.5, 1.0]
    );
    assert!(clip_grad_norm(
        [&Tensor::zeros([1], (Kind::Float, Device::Cpu))],
        1.0,
        Norm::L2
    )
    .unwrap()
    .is_none());
}

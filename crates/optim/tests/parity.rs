//! Parity with the Python oracle: torch.optim.{SGD, AdamW, RAdam} and reference Ranger /
//! Lookahead implementations, 50 steps on the same parameters and gradients.

mod common;

use brigade_optim::{
    ranger, AdamW, AdamWConfig, GroupSpec, Lookahead, Optimizer, Param, RAdam, RAdamConfig,
    RangerConfig, Sgd, SgdConfig, WeightDecay,
};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

const STEPS: usize = 50;
const SHAPES: [&[i64]; 4] = [&[6, 3, 3, 3], &[6], &[4, 6], &[4]];
/// gradient scale per parameter: small ones make eps placement matter
const SCALES: [f64; 4] = [1.0, 1e-3, 0.1, 1e-2];

struct Case {
    name: &'static str,
    kind: Kind,
    /// (lr, wd, momentum) per group; group 0 = p0, p1; group 1 = p2, p3
    hyper: [(f64, f64, f64); 2],
    oracle: Value,
    build: fn(Vec<GroupSpec>) -> Box<dyn Optimizer>,
}

fn dtype(k: Kind) -> &'static str {
    if k == Kind::Double {
        "f64"
    } else {
        "f32"
    }
}

fn cases() -> Vec<Case> {
    let sgd_cfg = |nesterov: bool, dampening: f64| json!({"opt": "sgd", "cfg": {"nesterov": nesterov, "dampening": dampening}});
    let adam = json!({"opt": "adamw", "cfg": {"beta2": 0.999, "eps": 1e-8}});
    let adam_eps = json!({"opt": "adamw", "cfg": {"beta2": 0.99, "eps": 1e-3}});
    let radam =
        |dec: bool| json!({"opt": "radam", "cfg": {"beta2": 0.999, "eps": 1e-6, "decoupled": dec}});
    let ranger_cfg = json!({"opt": "ranger", "cfg": {"beta1": 0.95, "beta2": 0.999, "eps": 1e-5,
        "k": 6, "alpha": 0.5, "gc": true, "thr": 5.0}});
    vec![
        Case {
            name: "sgd_momentum_wd",
            kind: Kind::Double,
            hyper: [(0.05, 1e-2, 0.9), (0.1, 5e-3, 0.8)],
            oracle: sgd_cfg(false, 0.1),
            build: |g| {
                Box::new(
                    Sgd::new(
                        g,
                        SgdConfig {
                            dampening: 0.1,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "sgd_nesterov_wd_f32",
            kind: Kind::Float,
            hyper: [(0.05, 1e-2, 0.9), (0.1, 5e-3, 0.8)],
            oracle: sgd_cfg(true, 0.0),
            build: |g| {
                Box::new(
                    Sgd::new(
                        g,
                        SgdConfig {
                            nesterov: true,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "sgd_nesterov",
            kind: Kind::Double,
            hyper: [(0.05, 0.0, 0.9), (0.1, 0.0, 0.8)],
            oracle: sgd_cfg(true, 0.0),
            build: |g| {
                Box::new(
                    Sgd::new(
                        g,
                        SgdConfig {
                            nesterov: true,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "sgd_plain",
            kind: Kind::Double,
            hyper: [(0.05, 1e-2, 0.0), (0.1, 0.0, 0.0)],
            oracle: sgd_cfg(false, 0.0),
            build: |g| {
                Box::new(
                    Sgd::new(
                        g,
                        SgdConfig {
                            momentum: 0.0,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "adamw_f32",
            kind: Kind::Float,
            hyper: [(1e-3, 0.05, 0.9), (3e-3, 0.1, 0.85)],
            oracle: adam,
            build: |g| Box::new(AdamW::new(g, AdamWConfig::default()).unwrap()),
        },
        Case {
            name: "adamw_eps",
            kind: Kind::Double,
            hyper: [(1e-3, 0.05, 0.9), (3e-3, 0.1, 0.85)],
            oracle: adam_eps,
            build: |g| {
                Box::new(
                    AdamW::new(
                        g,
                        AdamWConfig {
                            betas: (0.9, 0.99),
                            eps: 1e-3,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "radam_l2",
            kind: Kind::Double,
            hyper: [(1e-3, 0.05, 0.9), (3e-3, 0.1, 0.85)],
            oracle: radam(false),
            build: |g| {
                Box::new(
                    RAdam::new(
                        g,
                        RAdamConfig {
                            eps: 1e-6,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "radam_decoupled_f32",
            kind: Kind::Float,
            hyper: [(1e-3, 0.05, 0.9), (3e-3, 0.1, 0.85)],
            oracle: radam(true),
            build: |g| {
                Box::new(
                    RAdam::new(
                        g,
                        RAdamConfig {
                            eps: 1e-6,
                            decay_mode: WeightDecay::Decoupled,
                            ..Default::default()
                        },
                    )
                    .unwrap(),
                )
            },
        },
        Case {
            name: "ranger_nowd",
            kind: Kind::Double,
            hyper: [(1e-2, 0.0, 0.95), (3e-2, 0.0, 0.95)],
            oracle: ranger_cfg.clone(),
            build: |g| Box::new(ranger(g, RangerConfig::default()).unwrap()),
        },
        Case {
            name: "ranger_wd",
            kind: Kind::Double,
            hyper: [(1e-2, 0.1, 0.95), (3e-2, 0.05, 0.95)],
            oracle: ranger_cfg.clone(),
            build: |g| Box::new(ranger(g, RangerConfig::default()).unwrap()),
        },
        Case {
            name: "ranger_wd_f32",
            kind: Kind::Float,
            hyper: [(1e-2, 0.1, 0.95), (3e-2, 0.05, 0.95)],
            oracle: ranger_cfg,
            build: |g| Box::new(ranger(g, RangerConfig::default()).unwrap()),
        },
        Case {
            name: "lookahead_sgd",
            kind: Kind::Double,
            hyper: [(0.05, 1e-2, 0.9), (0.1, 0.0, 0.8)],
            oracle: json!({"opt": "lookahead_sgd", "cfg": {"nesterov": false, "dampening": 0.0, "k": 5, "alpha": 0.5}}),
            build: |g| {
                Box::new(
                    Lookahead::new(Sgd::new(g, SgdConfig::default()).unwrap(), 5, 0.5).unwrap(),
                )
            },
        },
        Case {
            name: "lookahead_adamw_f32",
            kind: Kind::Float,
            hyper: [(1e-3, 0.05, 0.9), (3e-3, 0.1, 0.85)],
            oracle: json!({"opt": "lookahead_adamw", "cfg": {"beta2": 0.999, "eps": 1e-8, "k": 4, "alpha": 0.8}}),
            build: |g| {
                Box::new(
                    Lookahead::new(AdamW::new(g, AdamWConfig::default()).unwrap(), 4, 0.8).unwrap(),
                )
            },
        },
    ]
}

/// Sets `p.grad` to exactly `g` (backward of `sum(p * g)` after zeroing).
fn set_grad(p: &Tensor, g: &Tensor) {
    let mut p2 = p.shallow_clone();
    p2.zero_grad();
    (p * g).sum(p.kind()).backward();
}

#[test]
fn optimizers_match_torch_and_references() {
    tch::manual_seed(1234);
    let init: Vec<Tensor> = SHAPES
        .iter()
        .map(|s| Tensor::randn(*s, (Kind::Double, Device::Cpu)))
        .collect();
    let grads: Vec<Vec<Tensor>> = (0..STEPS)
        .map(|_| {
            SHAPES
                .iter()
                .zip(SCALES)
                .map(|(s, k)| Tensor::randn(*s, (Kind::Double, Device::Cpu)) * k + 0.3 * k)
                .collect()
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let mut named: Vec<(String, Tensor)> = init
        .iter()
        .enumerate()
        .map(|(j, t)| (format!("p{j}"), t.shallow_clone()))
        .collect();
    for (s, gs) in grads.iter().enumerate() {
        for (j, g) in gs.iter().enumerate() {
            named.push((format!("g{s}.p{j}"), g.shallow_clone()));
        }
    }
    let input = dir.path().join("in.safetensors");
    Tensor::write_safetensors(&named, &input).unwrap();

    let decay: Value = json!({"p0": true, "p1": false, "p2": true, "p3": false});
    let spec_cases: Vec<Value> = cases()
        .iter()
        .map(|c| {
            let mut v = c.oracle.clone();
            v["name"] = json!(c.name);
            v["dtype"] = json!(dtype(c.kind));
            v["decay"] = decay.clone();
            v["groups"] = json!([
                {"params": ["p0", "p1"], "lr": c.hyper[0].0, "wd": c.hyper[0].1, "momentum": c.hyper[0].2},
                {"params": ["p2", "p3"], "lr": c.hyper[1].0, "wd": c.hyper[1].1, "momentum": c.hyper[1].2},
            ]);
            v
        })
        .collect();
    let spec = dir.path().join("spec.json");
    std::fs::write(
        &spec,
        serde_json::to_vec(&json!({"steps": STEPS, "cases": spec_cases})).unwrap(),
    )
    .unwrap();
    let output = dir.path().join("out.safetensors");
    common::run_oracle(&[
        "optim",
        spec.to_str().unwrap(),
        input.to_str().unwrap(),
        output.to_str().unwrap(),
    ]);
    let want: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&output)
        .unwrap()
        .into_iter()
        .collect();

    let mut failures = Vec::new();
    for c in cases() {
        let params: Vec<Tensor> = init
            .iter()
            .map(|t| t.to_kind(c.kind).copy().detach().set_requires_grad(true))
            .collect();
        let p = |j: usize| Param::new(format!("p{j}"), &params[j]);
        let groups = vec![
            GroupSpec::new("g0", vec![p(0), p(1)])
                .lr(c.hyper[0].0)
                .weight_decay(c.hyper[0].1)
                .momentum(c.hyper[0].2),
            GroupSpec::new("g1", vec![p(2), p(3)])
                .lr(c.hyper[1].0)
                .weight_decay(c.hyper[1].1)
                .momentum(c.hyper[1].2),
        ];
        let mut opt = (c.build)(groups);
        let mut worst = 0.0f64;
        let mut worst_delta = 0.0f64;
        for (s, gs) in grads.iter().enumerate() {
            for (pj, g) in params.iter().zip(gs) {
                set_grad(pj, &g.to_kind(c.kind));
            }
            opt.step().unwrap();
            for (j, pj) in params.iter().enumerate() {
                let w = &want[&format!("{}.{s}.p{j}", c.name)];
                let ours = pj.detach().to_kind(Kind::Double);
                let w = w.to_kind(Kind::Double);
                // relative error on the parameters, elementwise with a small floor
                let rel = ((&ours - &w).abs() / (w.abs() + 1e-3))
                    .max()
                    .double_value(&[]);
                worst = worst.max(rel);
                // and on the accumulated update p_t - p_0 (catches eps/ordering slips)
                let p0 = init[j].to_kind(c.kind).to_kind(Kind::Double);
                let (d_ours, d_want) = (&ours - &p0, &w - &p0);
                let scale = d_want.abs().max().double_value(&[]).max(1e-30);
                let rd = (&d_ours - &d_want).abs().max().double_value(&[]) / scale;
                worst_delta = worst_delta.max(rd);
            }
        }
        let (tol, tol_delta) = if c.kind == Kind::Double {
            (1e-12, 1e-10)
        } else {
            (1e-6, 1e-4)
        };
        eprintln!(
            "{:<24} worst rel err {worst:.3e}, worst rel err of the update {worst_delta:.3e}",
            c.name
        );
        if !(worst <= tol && worst_delta <= tol_delta) {
            failures.push(format!(
                "{}: rel {worst:.3e} (tol {tol:e}), update {worst_delta:.3e} (tol {tol_delta:e})",
                c.name
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "parity failures:\n{}",
        failures.join("\n")
    );
}

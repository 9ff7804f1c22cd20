//! Shim tests: autocast, memory formats, pinned memory, errors, launch, and a
//! 2-rank Gloo data-parallel run compared with a 1-process run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use brigade_torch_ext::*;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Kind, Tensor};

fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// The oracle's JSON (tests/oracle.py), computed once per test binary.
fn oracle() -> &'static serde_json::Value {
    static ORACLE: OnceLock<serde_json::Value> = OnceLock::new();
    ORACLE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oracle.py");
        let out = Command::new(python())
            .arg(&script)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "oracle python {} could not run ({e}); run through scripts/with-env.sh",
                    python()
                )
            });
        assert!(
            out.status.success(),
            "oracle python {} failed (is torch installed?): {}",
            python(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("oracle JSON")
    })
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number") as f32)
        .collect()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    let t = t.to_kind(Kind::Float).flatten(0, -1).contiguous();
    Vec::<f32>::try_from(&t).expect("f32 vec")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn det_inputs() -> (Tensor, Tensor) {
    let x = (Tensor::arange(2 * 3 * 8 * 8, (Kind::Float, Device::Cpu)) * 0.37)
        .sin()
        .reshape([2, 3, 8, 8]);
    let w = (Tensor::arange(4 * 3 * 3 * 3, (Kind::Float, Device::Cpu)) * 0.11)
        .cos()
        .reshape([4, 3, 3, 3]);
    (x, w)
}

fn conv(x: &Tensor, w: &Tensor) -> Tensor {
    x.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
}

#[test]
fn autocast_bf16_conv_matches_torch_and_restores() {
    let o = oracle();
    assert_eq!(o["conv_dtype"], "torch.bfloat16");
    let (x, w) = det_inputs();
    assert!(!autocast_state(DeviceType::Cpu).unwrap().0);
    let y = {
        let _g = autocast(DeviceType::Cpu, Kind::BFloat16, true).unwrap();
        assert_eq!(
            autocast_state(DeviceType::Cpu).unwrap(),
            (true, Kind::BFloat16)
        );
        conv(&x, &w)
    };
    assert_eq!(y.kind(), Kind::BFloat16);
    let got = to_vec(&y);
    let bf16_ref = floats(&o["conv_bf16"]);
    let f32_ref = floats(&o["conv_f32"]);
    let scale = f32_ref.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    assert!(
        max_abs_diff(&got, &bf16_ref) <= 1e-2 * scale,
        "bf16 conv differs from torch.autocast"
    );
    // It really ran in reduced precision: not bit-equal to the f32 result.
    assert!(
        max_abs_diff(&got, &f32_ref) > 0.0,
        "autocast output identical to f32: no bf16 rounding"
    );
    // Guard dropped: state restored, conv back to f32 and equal to the oracle's f32.
    assert!(!autocast_state(DeviceType::Cpu).unwrap().0);
    let y32 = conv(&x, &w);
    assert_eq!(y32.kind(), Kind::Float);
    assert!(max_abs_diff(&to_vec(&y32), &f32_ref) <= 1e-4 * scale);
}

#[test]
fn autocast_nests_and_disabled_region_is_f32() {
    let (x, w) = det_inputs();
    let _outer = autocast(DeviceType::Cpu, Kind::BFloat16, true).unwrap();
    {
        let _inner = autocast(DeviceType::Cpu, Kind::BFloat16, false).unwrap();
        assert_eq!(conv(&x, &w).kind(), Kind::Float);
    }
    assert_eq!(conv(&x, &w).kind(), Kind::BFloat16);
}

#[test]
fn autocast_matmul_grads_are_finite_f32_and_match_torch() {
    let o = oracle();
    let a = (Tensor::arange(16 * 8, (Kind::Float, Device::Cpu)) * 0.05)
        .sin()
        .reshape([16, 8]);
    let m = (Tensor::arange(8 * 4, (Kind::Float, Device::Cpu)) * 0.21)
        .cos()
        .reshape([8, 4])
        .set_requires_grad(true);
    let p = {
        let _g = autocast(DeviceType::Cpu, Kind::BFloat16, true).unwrap();
        a.matmul(&m)
    };
    assert_eq!(o["matmul_dtype"], "torch.bfloat16");
    assert_eq!(p.kind(), Kind::BFloat16);
    p.to_kind(Kind::Float)
        .pow_tensor_scalar(2)
        .mean(Kind::Float)
        .backward();
    let g = m.grad();
    assert_eq!(o["matmul_grad_dtype"], "torch.float32");
    assert_eq!(g.kind(), Kind::Float);
    let got = to_vec(&g);
    assert!(got.iter().all(|v| v.is_finite()), "non-finite grads");
    let want = floats(&o["matmul_grad"]);
    let scale = want.iter().fold(1e-3f32, |mx, v| mx.max(v.abs()));
    assert!(
        max_abs_diff(&got, &want) <= 1e-2 * scale,
        "grads differ from torch autocast"
    );
}

#[test]
fn autocast_rejects_non_half_dtype() {
    let e = autocast(DeviceType::Cpu, Kind::Float, true).unwrap_err();
    assert!(matches!(e, Error::Torch { .. }), "{e}");
    assert!(e.to_string().contains("bfloat16"), "{e}");
    assert!(!autocast_state(DeviceType::Cpu).unwrap().0);
}

#[test]
fn channels_last_keeps_values_and_reports_format() {
    let (x, _) = det_inputs();
    assert!(!is_channels_last(&x));
    assert_eq!(suggest_memory_format(&x).unwrap(), MemoryFormat::Contiguous);
    let cl = to_memory_format(&x, MemoryFormat::ChannelsLast).unwrap();
    assert!(is_channels_last(&cl));
    assert!(!cl.is_contiguous());
    assert_eq!(
        suggest_memory_format(&cl).unwrap(),
        MemoryFormat::ChannelsLast
    );
    let want: Vec<i64> = oracle()["cl_stride"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect();
    assert_eq!(cl.stride(), want);
    assert_eq!(to_vec(&cl), to_vec(&x));
    let back = to_memory_format(&cl, MemoryFormat::Contiguous).unwrap();
    assert!(back.is_contiguous() && !is_channels_last(&back));
    assert_eq!(to_vec(&back), to_vec(&x));
}

#[test]
fn channels_last_on_1d_is_a_libtorch_error() {
    let t = Tensor::arange(5, (Kind::Float, Device::Cpu));
    let e = to_memory_format(&t, MemoryFormat::ChannelsLast).unwrap_err();
    match &e {
        Error::Torch { op, message } => {
            assert_eq!(*op, "to_memory_format");
            assert!(
                message.contains("rank 4"),
                "unexpected libtorch message: {message}"
            );
        }
        other => panic!("wrong error {other}"),
    }
}

#[test]
fn varstore_conversion_keeps_identity_and_values() {
    let vs = nn::VarStore::new(Device::Cpu);
    let c = nn::conv2d(
        vs.root() / "conv",
        3,
        4,
        3,
        nn::ConvConfig {
            padding: 1,
            ..Default::default()
        },
    );
    let _l = nn::linear(vs.root() / "fc", 4, 2, Default::default());
    let (x, _) = det_inputs();
    let before = c.forward(&x);
    let w_before = to_vec(&c.ws);
    let n = varstore_to_memory_format(&vs, MemoryFormat::ChannelsLast).unwrap();
    assert_eq!(n, 1, "only the 4-d conv weight changes layout");
    assert!(
        is_channels_last(&c.ws),
        "the module's own handle sees the new layout"
    );
    assert!(c.ws.requires_grad());
    assert_eq!(to_vec(&c.ws), w_before);
    let after = c.forward(&to_memory_format(&x, MemoryFormat::ChannelsLast).unwrap());
    assert!(max_abs_diff(&to_vec(&after), &to_vec(&before)) < 1e-5);
    assert_eq!(
        varstore_to_memory_format(&vs, MemoryFormat::ChannelsLast).unwrap(),
        0
    );
    assert_eq!(
        varstore_to_memory_format(&vs, MemoryFormat::Contiguous).unwrap(),
        1
    );
    assert!(c.ws.is_contiguous());
}

#[test]
fn pin_memory_is_a_result() {
    let t = Tensor::ones([4], (Kind::Float, Device::Cpu));
    match pin_memory(&t) {
        Ok(p) => {
            assert!(tch::Cuda::is_available());
            assert!(is_pinned(&p).unwrap());
            assert_eq!(to_vec(&p), to_vec(&t));
        }
        Err(e) => {
            assert!(
                !tch::Cuda::is_available(),
                "pinning failed with a GPU present: {e}"
            );
            assert!(!is_pinned(&t).unwrap());
        }
    }
}

fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
    move |k| {
        pairs
            .iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

#[test]
fn dist_config_env_errors() {
    let ok = DistConfig::from_lookup(env_of(&[
        ("RANK", "1"),
        ("WORLD_SIZE", "2"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ]))
    .unwrap();
    assert_eq!(
        (ok.rank, ok.world_size, ok.local_rank, ok.master_port),
        (1, 2, 1, 29500)
    );
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "1"),
            ],
            "RANK",
        ),
        (
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "notaport"),
            ],
            "MASTER_PORT",
        ),
        (
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "70000"),
            ],
            "MASTER_PORT",
        ),
        (
            &[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "h")],
            "MASTER_PORT",
        ),
        (
            &[
                ("RANK", "2"),
                ("WORLD_SIZE", "2"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "1"),
            ],
            "RANK",
        ),
        (
            &[
                ("RANK", "0"),
                ("WORLD_SIZE", "0"),
                ("MASTER_ADDR", "h"),
                ("MASTER_PORT", "1"),
            ],
            "WORLD_SIZE",
        ),
        (
            &[("RANK", "0"), ("WORLD_SIZE", "1"), ("MASTER_PORT", "1")],
            "MASTER_ADDR",
        ),
    ];
    for (pairs, bad) in cases {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        let e =
            DistConfig::from_lookup(|k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
                .unwrap_err();
        match e {
            Error::Env { var, .. } => assert_eq!(var, *bad, "{pairs:?}"),
            other => panic!("{pairs:?}: wrong error {other}"),
        }
    }
}

#[test]
fn unreachable_master_is_an_error_not_a_hang() {
    let port = free_port().unwrap(); // nobody listens there
    let cfg = DistConfig {
        rank: 1,
        world_size: 2,
        local_rank: 1,
        master_addr: "127.0.0.1".into(),
        master_port: port,
        timeout: Duration::from_millis(1500),
        backend: Backend::Gloo,
        gloo_interface: None,
    };
    let t0 = Instant::now();
    let e = ProcessGroup::new(cfg).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Torch {
                op: "process_group_new",
                ..
            }
        ),
        "{e}"
    );
    assert!(
        t0.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t0.elapsed()
    );
}

#[test]
fn single_rank_group_collectives() {
    let cfg = DistConfig {
        rank: 0,
        world_size: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: free_port().unwrap(),
        timeout: Duration::from_secs(20),
        backend: Backend::Gloo,
        gloo_interface: None,
    };
    let pg = ProcessGroup::new(cfg).unwrap();
    let t = Tensor::from_slice(&[1.0f32, 2.0, 3.0]);
    let s = pg.allreduce_metric(&t, ReduceOp::Avg).unwrap();
    assert_eq!(to_vec(&s), vec![1.0, 2.0, 3.0]);
    pg.barrier().unwrap();
    let nc = Tensor::ones([2, 2], (Kind::Float, Device::Cpu)).transpose(0, 1);
    assert!(matches!(
        pg.allreduce(&[&nc], ReduceOp::Sum),
        Err(Error::Invalid(_))
    ));
    let ints = Tensor::from_slice(&[1i64, 2]);
    assert!(matches!(
        pg.allreduce(&[&ints], ReduceOp::Avg),
        Err(Error::Invalid(_))
    ));
}

#[test]
fn launch_reports_failures_and_timeouts() {
    let ok = LaunchOptions::new(2);
    launch("sh", &["-c", r#"test "$RANK" -lt "$WORLD_SIZE" && test "$LOCAL_RANK" = "$RANK" && test -n "$MASTER_PORT""#], &ok)
        .unwrap();
    let e = launch("sh", &["-c", r#"[ "$RANK" = 1 ] && exit 3; sleep 20"#], &ok).unwrap_err();
    assert!(matches!(e, Error::RankFailed { rank: 1, .. }), "{e}");
    let t0 = Instant::now();
    let mut slow = LaunchOptions::new(2);
    slow.timeout = Some(Duration::from_millis(300));
    let e = launch("sleep", &["20"], &slow).unwrap_err();
    assert!(
        matches!(&e, Error::Timeout { unfinished, .. } if unfinished == &vec![0, 1]),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(10));
    let e = launch("/nonexistent/brigade-prog", &["x"], &ok).unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
}

// ------------------------------------------------------------- 2-rank DDP

const GLOBAL_BATCH: i64 = 8;
const STEPS: usize = 4;

fn model(vs: &nn::VarStore) -> impl Module {
    let p = vs.root();
    nn::seq()
        .add(nn::linear(&p / "fc1", 6, 16, Default::default()))
        .add_fn(|x| x.relu())
        .add(nn::linear(&p / "fc2", 16, 3, Default::default()))
}

fn data() -> (Tensor, Tensor) {
    tch::manual_seed(7);
    let x = Tensor::randn([STEPS as i64, GLOBAL_BATCH, 6], (Kind::Float, Device::Cpu));
    let y = Tensor::randint(3, [STEPS as i64, GLOBAL_BATCH], (Kind::Int64, Device::Cpu));
    (x, y)
}

fn params(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .map(|(k, t)| (k, t.detach().copy()))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

fn step_file(dir: &Path, rank: usize, step: usize) -> PathBuf {
    dir.join(format!("rank{rank}_step{step}.ot"))
}

/// The worker half of `ddp_two_ranks_match_one_rank` (run by it via `launch`).
#[test]
#[ignore = "worker of ddp_two_ranks_match_one_rank; needs the launch environment"]
fn ddp_worker() {
    let Ok(out) = std::env::var("BRIGADE_DDP_OUT") else {
        eprintln!("ddp_worker: not launched by ddp_two_ranks_match_one_rank (no BRIGADE_DDP_OUT); nothing to do");
        return;
    };
    let out = PathBuf::from(out);
    let pg = ProcessGroup::from_env().expect("process group");
    let (rank, world) = (pg.rank(), pg.world_size() as i64);
    tch::manual_seed(1000 + rank as i64); // different inits: the broadcast must fix them
    let vs = nn::VarStore::new(Device::Cpu);
    let net = model(&vs);
    pg.broadcast_parameters(&vs, 0).unwrap();
    Tensor::save_multi(&params(&vs), step_file(&out, rank, 0)).unwrap();
    let reducer = GradientReducer::new(&vs, 256).unwrap(); // small buckets: several per step
    assert!(reducer.num_buckets() > 1);
    let mut opt = nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&vs, 0.1)
    .unwrap();
    let (x, y) = data();
    let local = GLOBAL_BATCH / world;
    for step in 0..STEPS {
        let xs = x.get(step as i64).narrow(0, rank as i64 * local, local);
        let ys = y.get(step as i64).narrow(0, rank as i64 * local, local);
        opt.zero_grad();
        let loss = net.forward(&xs).cross_entropy_for_logits(&ys);
        loss.backward();
        reducer.reduce(&pg).unwrap();
        opt.step();
        let global_loss = pg.allreduce_metric(&loss, ReduceOp::Avg).unwrap();
        let mut p = params(&vs);
        p.push(("loss".into(), global_loss));
        Tensor::save_multi(&p, step_file(&out, rank, step + 1)).unwrap();
    }
    pg.barrier().unwrap();
}

#[test]
fn ddp_two_ranks_match_one_rank() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut opts = LaunchOptions::new(2);
    opts.timeout = Some(Duration::from_secs(60));
    opts.env
        .push(("BRIGADE_DDP_OUT".into(), dir.path().display().to_string()));
    opts.env
        .push(("BRIGADE_DIST_TIMEOUT_S".into(), "50".into()));
    launch(
        &exe,
        &[
            "ddp_worker",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &opts,
    )
    .unwrap();

    // The same training in one process on the full global batch, from rank 0's init.
    tch::manual_seed(1000);
    let vs = nn::VarStore::new(Device::Cpu);
    let net = model(&vs);
    let mut opt = nn::Sgd {
        momentum: 0.9,
        ..Default::default()
    }
    .build(&vs, 0.1)
    .unwrap();
    let (x, y) = data();
    let mut reference = vec![params(&vs)];
    let mut losses = Vec::new();
    for step in 0..STEPS {
        opt.zero_grad();
        let loss = net
            .forward(&x.get(step as i64))
            .cross_entropy_for_logits(&y.get(step as i64));
        loss.backward();
        opt.step();
        losses.push(loss.double_value(&[]));
        reference.push(params(&vs));
    }

    for (step, want) in reference.iter().enumerate() {
        let r0 = Tensor::load_multi(step_file(dir.path(), 0, step)).unwrap();
        let r1 = Tensor::load_multi(step_file(dir.path(), 1, step)).unwrap();
        for (name, w) in want {
            let find = |v: &[(String, Tensor)]| {
                v.iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, t)| to_vec(t))
                    .unwrap()
            };
            let (a, b) = (find(&r0), find(&r1));
            assert_eq!(a, b, "step {step} {name}: ranks differ");
            let d = max_abs_diff(&a, &to_vec(w));
            assert!(
                d <= 1e-5,
                "step {step} {name}: 2-rank vs 1-process differ by {d}"
            );
        }
        if step > 0 {
            let l = r0
                .iter()
                .find(|(n, _)| n == "loss")
                .map(|(_, t)| t.double_value(&[]))
                .unwrap();
            assert!(
                (l - losses[step - 1]).abs() <= 1e-5,
                "step {step}: global loss {l} vs {}",
                losses[step - 1]
            );
        }
    }
}

#[cfg(feature = "cuda")]
#[test]
fn cuda_streams_and_events() {
    assert!(has_cuda_support());
    if !tch::Cuda::is_available() {
        // No GPU: every call is an error value, never an abort.
        assert!(Stream::new(0, false).is_err());
        return;
    }
    let side = Stream::new(0, false).unwrap();
    let main = Stream::current(0).unwrap();
    assert_eq!(side.device().unwrap(), 0);
    let mut done = Event::new(true).unwrap();
    let mut start = Event::new(true).unwrap();
    let x = {
        let _g = side.make_current().unwrap();
        start.record(&side).unwrap();
        let x = Tensor::ones([1024, 1024], (Kind::Float, Device::Cuda(0)))
            .matmul(&Tensor::ones([1024, 1024], (Kind::Float, Device::Cuda(0))));
        done.record(&side).unwrap();
        side.record_tensor(&x).unwrap();
        x
    };
    done.wait(&main).unwrap();
    done.synchronize().unwrap();
    assert!(done.query().unwrap() && side.query().unwrap());
    assert!(start.elapsed_ms(&done).unwrap() >= 0.0);
    assert_eq!(x.double_value(&[0, 0]), 1024.0);
    main.synchronize().unwrap();
    let y = {
        let _bf = autocast(DeviceType::Cuda, Kind::BFloat16, true).unwrap();
        x.matmul(&x)
    };
    assert_eq!(y.kind(), Kind::BFloat16);
}

//! Pipeline behaviour: region reads, determinism, scratch reuse, config.

mod common;

use brigade_augment::{
    AugmentError, ColorJitterConfig, EvalConfig, FastaiConfig, Geometry, Pipeline, PipelineConfig,
    RandomErasingConfig, Rect, RrcConfig, SampleSeed, Scratch, TrainConfig, TrivialAugmentConfig,
};
use brigade_pixels::ImageView;
use common::{diff, test_image};

fn pipelines() -> Vec<(&'static str, Pipeline)> {
    let full_train = TrainConfig {
        geometry: Geometry::RandomResizedCrop(RrcConfig::default()),
        trivial_augment: Some(TrivialAugmentConfig::default()),
        color_jitter: Some(ColorJitterConfig {
            hue: 0.1,
            ..Default::default()
        }),
        random_erasing: Some(RandomErasingConfig {
            p: 1.0,
            ..Default::default()
        }),
    };
    let fastai = TrainConfig {
        geometry: Geometry::Fastai(FastaiConfig::default()),
        ..Default::default()
    };
    vec![
        ("rrc", Pipeline::default()),
        (
            "rrc+ta+jitter+erase",
            Pipeline::new(PipelineConfig::Train(full_train)).unwrap(),
        ),
        (
            "fastai",
            Pipeline::new(PipelineConfig::Train(fastai)).unwrap(),
        ),
        (
            "eval",
            Pipeline::new(PipelineConfig::Eval(EvalConfig::default())).unwrap(),
        ),
    ]
}

fn crop(img: &[u8], w: u32, r: Rect) -> Vec<u8> {
    let mut v = Vec::with_capacity((r.w * r.h * 3) as usize);
    for y in r.y..r.y + r.h {
        let s = ((y * w + r.x) * 3) as usize;
        v.extend_from_slice(&img[s..s + r.w as usize * 3]);
    }
    v
}

/// 2x box downscale (what a DCT-scaled decode roughly gives).
fn half(img: &[u8], w: u32, h: u32) -> (Vec<u8>, u32, u32) {
    let (hw, hh) = (w / 2, h / 2);
    let mut v = Vec::with_capacity((hw * hh * 3) as usize);
    for y in 0..hh {
        for x in 0..hw {
            for c in 0..3 {
                let at = |xx: u32, yy: u32| u32::from(img[((yy * w + xx) * 3 + c) as usize]);
                let s = at(2 * x, 2 * y)
                    + at(2 * x + 1, 2 * y)
                    + at(2 * x, 2 * y + 1)
                    + at(2 * x + 1, 2 * y + 1);
                v.push(((s + 2) / 4) as u8);
            }
        }
    }
    (v, hw, hh)
}

#[test]
fn region_gives_the_same_bytes_as_the_full_image() {
    let mut scratch = Scratch::new();
    for (wi, &(w, h)) in [(320u32, 240u32), (500, 375), (180, 400), (900, 700)]
        .iter()
        .enumerate()
    {
        let img = test_image(w, h, wi as u32);
        let full = ImageView {
            width: w,
            height: h,
            data: &img,
        };
        for (name, pipe) in pipelines() {
            for s in 0..12u64 {
                let seed = SampleSeed::new(5, 1, s);
                let out = if s % 2 == 0 { (224, 224) } else { (128, 96) };
                let region = pipe.source_region((w, h), out, seed);
                assert!(
                    region.fits_in((w, h)) && region.w > 0 && region.h > 0,
                    "{name} {region:?}"
                );
                let n = (out.0 * out.1 * 3) as usize;
                let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                pipe.apply(
                    full,
                    Rect::full((w, h)),
                    (w, h),
                    out,
                    seed,
                    &mut scratch,
                    &mut a,
                )
                .unwrap();
                let part = crop(&img, w, region);
                let pv = ImageView {
                    width: region.w,
                    height: region.h,
                    data: &part,
                };
                pipe.apply(pv, region, (w, h), out, seed, &mut scratch, &mut b)
                    .unwrap();
                assert!(a == b, "{name} {w}x{h} seed {s}: region {region:?} differs");
            }
        }
    }
}

#[test]
fn downscaled_region_is_within_resampling_tolerance() {
    let mut scratch = Scratch::new();
    let (w, h) = (800u32, 600u32);
    let img = test_image(w, h, 9);
    let full = ImageView {
        width: w,
        height: h,
        data: &img,
    };
    for (name, pipe) in pipelines() {
        let mut worst = 0f64;
        for s in 0..8u64 {
            let seed = SampleSeed::new(11, 0, s);
            let out = (128, 128);
            let r = pipe.source_region((w, h), out, seed);
            // a 2x-downscaled decode needs even coordinates (w, h are even)
            let (x0, y0) = (r.x & !1, r.y & !1);
            let x1 = ((r.x + r.w + 1) & !1).min(w);
            let y1 = ((r.y + r.h + 1) & !1).min(h);
            let region = Rect::new(x0, y0, x1 - x0, y1 - y0);
            if region.w < 64 || region.h < 64 {
                continue; // too small a crop to downscale meaningfully
            }
            let part = crop(&img, w, region);
            let (small, sw, sh) = half(&part, region.w, region.h);
            let n = (out.0 * out.1 * 3) as usize;
            let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
            pipe.apply(
                full,
                Rect::full((w, h)),
                (w, h),
                out,
                seed,
                &mut scratch,
                &mut a,
            )
            .unwrap();
            let sv = ImageView {
                width: sw,
                height: sh,
                data: &small,
            };
            pipe.apply(sv, region, (w, h), out, seed, &mut scratch, &mut b)
                .unwrap();
            let (mean, _) = diff(&a, &b);
            worst = worst.max(mean);
        }
        eprintln!("{name}: worst mean abs diff full vs 2x-downscaled region {worst:.3}");
        // the test image has pixel noise of +-8, which a 2x decode averages away
        assert!(worst < 6.0, "{name}: mean abs diff {worst}");
    }
}

#[test]
fn same_seed_same_bytes_across_threads_and_orders() {
    let (w, h) = (300u32, 260u32);
    let img = test_image(w, h, 3);
    let run = |order: Vec<u64>| {
        let mut scratch = Scratch::new();
        let full = ImageView {
            width: w,
            height: h,
            data: &img,
        };
        let mut res = Vec::new();
        for (_, pipe) in pipelines() {
            for &s in &order {
                let mut d = vec![0u8; 64 * 64 * 3];
                pipe.apply(
                    full,
                    Rect::full((w, h)),
                    (w, h),
                    (64, 64),
                    SampleSeed::new(1, 2, s),
                    &mut scratch,
                    &mut d,
                )
                .unwrap();
                res.push((s, d));
            }
        }
        res.sort_by_key(|(s, _)| *s);
        res
    };
    let a = std::thread::scope(|sc| {
        let t1 = sc.spawn(|| run((0..16).collect()));
        let t2 = sc.spawn(|| run((0..16).rev().collect()));
        (t1.join().unwrap(), t2.join().unwrap())
    });
    assert!(a.0 == a.1);
    // and different seeds / epochs give different samples
    let pipe = Pipeline::default();
    let full = ImageView {
        width: w,
        height: h,
        data: &img,
    };
    let mut scratch = Scratch::new();
    let mut outs = Vec::new();
    for seed in [
        SampleSeed::new(1, 0, 0),
        SampleSeed::new(1, 1, 0),
        SampleSeed::new(2, 0, 0),
        SampleSeed::new(1, 0, 1),
    ] {
        let mut d = vec![0u8; 64 * 64 * 3];
        pipe.apply(
            full,
            Rect::full((w, h)),
            (w, h),
            (64, 64),
            seed,
            &mut scratch,
            &mut d,
        )
        .unwrap();
        outs.push(d);
    }
    for i in 0..outs.len() {
        for j in i + 1..outs.len() {
            assert_ne!(outs[i], outs[j], "seeds {i} and {j} gave the same sample");
        }
    }
}

#[test]
fn scratch_stops_growing_and_output_size_is_per_call() {
    let (w, h) = (640u32, 480u32);
    let img = test_image(w, h, 4);
    let full = ImageView {
        width: w,
        height: h,
        data: &img,
    };
    for (name, pipe) in pipelines() {
        let mut scratch = Scratch::new();
        let seed = SampleSeed::new(3, 0, 0);
        let mut d = vec![0u8; 224 * 224 * 3];
        pipe.apply(
            full,
            Rect::full((w, h)),
            (w, h),
            (224, 224),
            seed,
            &mut scratch,
            &mut d,
        )
        .unwrap();
        let cap = scratch.capacity_bytes();
        assert!(cap > 0, "{name}");
        pipe.apply(
            full,
            Rect::full((w, h)),
            (w, h),
            (224, 224),
            seed,
            &mut scratch,
            &mut d,
        )
        .unwrap();
        assert_eq!(
            scratch.capacity_bytes(),
            cap,
            "{name}: scratch grew on the second call"
        );
        // progressive resizing: a smaller output in the same slot type works too
        let mut small = vec![0u8; 128 * 128 * 3];
        pipe.apply(
            full,
            Rect::full((w, h)),
            (w, h),
            (128, 128),
            seed,
            &mut scratch,
            &mut small,
        )
        .unwrap();
        assert!(small.iter().any(|&v| v != 0), "{name}");
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let pipe = Pipeline::default();
    let img = test_image(50, 40, 0);
    let mut scratch = Scratch::new();
    let full = ImageView {
        width: 50,
        height: 40,
        data: &img,
    };
    let seed = SampleSeed::default();
    let mut d = vec![0u8; 32 * 32 * 3];
    let short = ImageView {
        width: 50,
        height: 40,
        data: &img[..100],
    };
    assert!(matches!(
        pipe.apply(
            short,
            Rect::full((50, 40)),
            (50, 40),
            (32, 32),
            seed,
            &mut scratch,
            &mut d
        ),
        Err(AugmentError::SourceSize { .. })
    ));
    let mut small = vec![0u8; 10];
    assert!(matches!(
        pipe.apply(
            full,
            Rect::full((50, 40)),
            (50, 40),
            (32, 32),
            seed,
            &mut scratch,
            &mut small
        ),
        Err(AugmentError::DestSize { .. })
    ));
    assert!(matches!(
        pipe.apply(
            full,
            Rect::new(10, 0, 50, 40),
            (50, 40),
            (32, 32),
            seed,
            &mut scratch,
            &mut d
        ),
        Err(AugmentError::RectOutside { .. })
    ));
    let mut e = Vec::new();
    assert!(matches!(
        pipe.apply(
            full,
            Rect::full((50, 40)),
            (50, 40),
            (0, 32),
            seed,
            &mut scratch,
            &mut e
        ),
        Err(AugmentError::Empty { .. })
    ));
    // a region that misses what the sample reads
    let region = pipe.source_region((500, 400), (32, 32), seed);
    let wrong = if region.x > 0 {
        Rect::new(0, 0, 1, 1)
    } else {
        Rect::new(499, 399, 1, 1)
    };
    let px = [0u8; 3];
    let one = ImageView {
        width: 1,
        height: 1,
        data: &px,
    };
    assert!(matches!(
        pipe.apply(one, wrong, (500, 400), (32, 32), seed, &mut scratch, &mut d),
        Err(AugmentError::RegionNotCovered { .. })
    ));
    // TTA on a train pipeline
    assert!(matches!(
        pipe.apply_tta(
            0,
            full,
            Rect::full((50, 40)),
            (50, 40),
            (32, 32),
            &mut scratch,
            &mut d
        ),
        Err(AugmentError::NoSuchVariant { .. })
    ));
}

#[test]
fn config_from_toml_rejects_unknown_keys_and_bad_values() {
    let cfg: PipelineConfig = toml::from_str(
        r#"
        kind = "train"
        [geometry]
        kind = "fastai"
        max_rotate = 15.0
        [trivial_augment]
        [random_erasing]
        p = 0.25
        value = "random"
        "#,
    )
    .unwrap();
    let PipelineConfig::Train(t) = &cfg else {
        panic!("{cfg:?}")
    };
    let Geometry::Fastai(f) = &t.geometry else {
        panic!("{cfg:?}")
    };
    assert_eq!(f.max_rotate, 15.0);
    assert_eq!(f.max_zoom, 1.1);
    assert_eq!(t.trivial_augment.as_ref().unwrap().num_bins, 31);
    Pipeline::new(cfg.clone()).unwrap();
    // round trip
    let s = toml::to_string(&cfg).unwrap();
    assert_eq!(toml::from_str::<PipelineConfig>(&s).unwrap(), cfg);

    let eval: PipelineConfig = toml::from_str("kind = \"eval\"\nresize_ratio = 1.25").unwrap();
    Pipeline::new(eval).unwrap();

    for bad in [
        "kind = \"train\"\ncolour_jitter = {}",
        "kind = \"train\"\n[geometry]\nkind = \"random_resized_crop\"\nscales = [0.1, 1.0]",
        "kind = \"eval\"\nresize = 256",
        "kind = \"test\"",
        "kind = \"train\"\n[random_erasing]\nvalue = \"noise\"",
    ] {
        assert!(
            toml::from_str::<PipelineConfig>(bad).is_err(),
            "accepted: {bad}"
        );
    }
    for bad in [
        "kind = \"train\"\n[geometry]\nkind = \"random_resized_crop\"\nscale = [0.9, 0.1]",
        "kind = \"train\"\n[geometry]\nkind = \"random_resized_crop\"\nhflip = 1.5",
        "kind = \"train\"\n[color_jitter]\nhue = 0.7",
        "kind = \"train\"\n[geometry]\nkind = \"fastai\"\nmax_zoom = 0.5",
        "kind = \"eval\"\nresize_ratio = 0.5",
        "kind = \"eval\"\ntta = []",
    ] {
        let cfg: PipelineConfig = toml::from_str(bad).unwrap();
        assert!(
            matches!(Pipeline::new(cfg), Err(AugmentError::Config(_))),
            "validated: {bad}"
        );
    }
}

#[test]
fn random_erasing_erases_a_plausible_rectangle() {
    let cfg = TrainConfig {
        geometry: Geometry::RandomResizedCrop(RrcConfig {
            scale: (1.0, 1.0),
            ratio: (1.0, 1.0),
            hflip: 0.0,
        }),
        random_erasing: Some(RandomErasingConfig {
            p: 1.0,
            value: brigade_augment::EraseValue::Black,
            ..Default::default()
        }),
        ..Default::default()
    };
    let pipe = Pipeline::new(PipelineConfig::Train(cfg)).unwrap();
    let img = vec![200u8; 64 * 64 * 3];
    let full = ImageView {
        width: 64,
        height: 64,
        data: &img,
    };
    let mut scratch = Scratch::new();
    let mut fracs = Vec::new();
    for s in 0..200 {
        let mut d = vec![0u8; 64 * 64 * 3];
        pipe.apply(
            full,
            Rect::full((64, 64)),
            (64, 64),
            (64, 64),
            SampleSeed::new(0, 0, s),
            &mut scratch,
            &mut d,
        )
        .unwrap();
        let black = d.chunks_exact(3).filter(|p| p == &[0, 0, 0]).count();
        let rest_ok = d
            .chunks_exact(3)
            .all(|p| p == [0, 0, 0] || p == [200, 200, 200]);
        assert!(rest_ok);
        fracs.push(black as f64 / 4096.0);
    }
    let erased = fracs.iter().filter(|&&f| f > 0.0).count();
    assert!(erased > 150, "only {erased} of 200 erased");
    assert!(fracs.iter().all(|&f| f <= 0.34), "{fracs:?}");
    let mean = fracs.iter().sum::<f64>() / fracs.len() as f64;
    assert!(mean > 0.08 && mean < 0.2, "mean erased fraction {mean}");
}

//! Pixel-level comparisons against torchvision / torch (the Python oracle).
//! Each test runs its oracle jobs in one Python process.

mod common;

use brigade_augment::ops::{self, TaOp, TA_OPS};
use brigade_augment::{
    fastai_warp, resized_crop, CropParams, CropPos, EvalConfig, FastaiParams, Pipeline,
    PipelineConfig, Rect, SampleSeed, Scratch, TtaVariant,
};
use brigade_pixels::ImageView;
use common::{diff, oracle_many, test_image};
use serde_json::json;

#[test]
fn resized_crop_and_flip_match_torchvision() {
    let mut scratch = Scratch::new();
    // (W, H, top, left, h, w, out_w, out_h, flip): downscale, upscale, mixed, tiny.
    let cases = [
        (
            512u32, 384u32, 10u32, 20u32, 300u32, 410u32, 224u32, 224u32, false,
        ),
        (512, 384, 0, 0, 384, 512, 224, 224, true),
        (300, 200, 50, 60, 61, 97, 224, 224, false),
        (300, 200, 3, 7, 190, 120, 160, 96, true),
        (97, 131, 0, 0, 131, 97, 31, 17, false),
    ];
    let mut jobs = Vec::new();
    let mut mine = Vec::new();
    for (i, &(w, h, top, left, ch, cw, ow, oh, flip)) in cases.iter().enumerate() {
        let img = test_image(w, h, i as u32);
        let src = ImageView {
            width: w,
            height: h,
            data: &img,
        };
        let mut dst = vec![0u8; (ow * oh * 3) as usize];
        let crop = CropParams {
            top,
            left,
            height: ch,
            width: cw,
        };
        resized_crop(src, crop, (ow, oh), flip, &mut scratch, &mut dst).unwrap();
        mine.push(dst);
        jobs.push((
            json!({"op": "resized_crop", "width": w, "height": h, "top": top, "left": left,
                   "h": ch, "w": cw, "out_w": ow, "out_h": oh, "flip": flip}),
            img,
        ));
    }
    for (i, (a, b)) in mine.iter().zip(oracle_many(jobs)).enumerate() {
        let (mean, max) = diff(a, &b);
        eprintln!("resized_crop case {i}: mean {mean:.4} max {max}");
        assert!(mean < 0.3 && max <= 1, "case {i}: mean {mean} max {max}");
    }
}

#[test]
fn eval_resize_and_crops_match_torchvision() {
    let pipe = Pipeline::new(PipelineConfig::Eval(EvalConfig::ten_crop())).unwrap();
    let mut scratch = Scratch::new();
    let mut jobs = Vec::new();
    let mut mine = Vec::new();
    for (i, &(w, h, ow, oh)) in [
        (512u32, 384u32, 224u32, 224u32),
        (333, 500, 224, 224),
        (200, 180, 128, 128),
    ]
    .iter()
    .enumerate()
    {
        let img = test_image(w, h, 100 + i as u32);
        let src = ImageView {
            width: w,
            height: h,
            data: &img,
        };
        let resize = ((ow.max(oh) as f64) * 8.0 / 7.0).round() as u32;
        for (k, v) in pipe.tta_variants().iter().enumerate() {
            if k % 3 != 0 && i > 0 {
                continue; // all variants on the first image, a sample on the rest
            }
            let mut dst = vec![0u8; (ow * oh * 3) as usize];
            pipe.apply_tta(
                k,
                src,
                Rect::full((w, h)),
                (w, h),
                (ow, oh),
                &mut scratch,
                &mut dst,
            )
            .unwrap();
            let pos = match v.pos {
                CropPos::Center => "center",
                CropPos::TopLeft => "top_left",
                CropPos::TopRight => "top_right",
                CropPos::BottomLeft => "bottom_left",
                CropPos::BottomRight => "bottom_right",
            };
            mine.push((format!("{w}x{h} {v:?}"), dst));
            jobs.push((
                json!({"op": "eval", "width": w, "height": h, "resize": resize, "out_w": ow,
                       "out_h": oh, "pos": pos, "flip": v.flip}),
                img.clone(),
            ));
        }
    }
    for ((name, a), b) in mine.iter().zip(oracle_many(jobs)) {
        let (mean, max) = diff(a, &b);
        eprintln!("eval {name}: mean {mean:.4} max {max}");
        assert!(mean < 0.3 && max <= 1, "{name}: mean {mean} max {max}");
    }
    // apply() of an eval pipeline is variant 0 (the centre crop).
    let (w, h) = (256u32, 300u32);
    let img = test_image(w, h, 7);
    let src = ImageView {
        width: w,
        height: h,
        data: &img,
    };
    let mut a = vec![0u8; 224 * 224 * 3];
    let mut b = vec![0u8; 224 * 224 * 3];
    pipe.apply(
        src,
        Rect::full((w, h)),
        (w, h),
        (224, 224),
        SampleSeed::new(1, 2, 3),
        &mut scratch,
        &mut a,
    )
    .unwrap();
    pipe.apply_tta(
        0,
        src,
        Rect::full((w, h)),
        (w, h),
        (224, 224),
        &mut scratch,
        &mut b,
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(pipe.tta_variants()[0], TtaVariant::IDENTITY);
}

#[test]
fn fastai_warp_matches_torch_grid_sample() {
    let mut scratch = Scratch::new();
    let cases = [
        // no-op geometry: a plain resize-to-fit + crop
        FastaiParams {
            flip: false,
            warp: [0.0; 4],
            rotate_deg: 0.0,
            zoom: (1.0, 0.5, 0.5),
            crop_pct: (0.5, 0.5),
        },
        FastaiParams {
            flip: true,
            warp: [0.15, -0.1, 0.05, -0.2],
            rotate_deg: 8.5,
            zoom: (1.08, 0.2, 0.9),
            crop_pct: (0.3, 0.8),
        },
        FastaiParams {
            flip: false,
            warp: [-0.2, 0.2, 0.1, 0.0],
            rotate_deg: -10.0,
            zoom: (1.1, 1.0, 0.0),
            crop_pct: (0.99, 0.01),
        },
    ];
    // sources at most 2x the output, so fastai samples without pre-downscaling
    let sizes = [
        (300u32, 240u32, 224u32, 224u32),
        (320, 400, 224, 224),
        (180, 150, 160, 128),
    ];
    let mut jobs = Vec::new();
    let mut mine = Vec::new();
    for (i, (p, &(w, h, ow, oh))) in cases.iter().zip(sizes.iter()).enumerate() {
        let img = test_image(w, h, 200 + i as u32);
        let src = ImageView {
            width: w,
            height: h,
            data: &img,
        };
        let mut dst = vec![0u8; (ow * oh * 3) as usize];
        fastai_warp(src, p, (ow, oh), &mut scratch, &mut dst).unwrap();
        mine.push(dst);
        jobs.push((
            json!({"op": "fastai", "width": w, "height": h, "out_w": ow, "out_h": oh,
                   "flip": p.flip, "warp": p.warp, "rotate_deg": p.rotate_deg,
                   "zoom": [p.zoom.0, p.zoom.1, p.zoom.2], "crop_pct": [p.crop_pct.0, p.crop_pct.1]}),
            img,
        ));
    }
    for (i, (a, b)) in mine.iter().zip(oracle_many(jobs)).enumerate() {
        let (mean, max) = diff(a, &b);
        eprintln!("fastai case {i}: mean {mean:.4} max {max}");
        assert!(mean < 0.05 && max <= 1, "case {i}: mean {mean} max {max}");
    }
}

#[test]
fn trivial_augment_ops_match_torchvision() {
    let (w, h) = (64u32, 48u32);
    let img = test_image(w, h, 300);
    let sq = test_image(40, 40, 301); // square: torchvision's rot90 fast path
    let mut tmp = Vec::new();
    let mut jobs = Vec::new();
    let mut mine = Vec::new();
    for op in TA_OPS {
        for &k in &[0u32, 7, 20, 30] {
            let (mag, signed) = op.magnitude(k, 31);
            if mag.is_none() && k != 0 {
                continue;
            }
            for sign in [1.0, -1.0] {
                if sign < 0.0 && !signed {
                    continue;
                }
                let m = mag.unwrap_or(0.0) * sign;
                for (im, iw, ih) in [(&img, w, h), (&sq, 40, 40)] {
                    let mut out = im.clone();
                    op.apply(&mut out, iw as usize, ih as usize, m, &mut tmp);
                    mine.push((op, m, out));
                    jobs.push((
                        json!({"op": "ta", "width": iw, "height": ih, "name": format!("{op:?}"), "magnitude": m}),
                        im.clone(),
                    ));
                }
            }
        }
    }
    for ((op, m, a), b) in mine.iter().zip(oracle_many(jobs)) {
        let (mean, max) = diff(a, &b);
        let mismatched = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        let frac = mismatched as f64 / a.len() as f64;
        // geometric ops use nearest sampling: a tie may round the other way,
        // so allow a few mismatched pixels; pixel ops are within 1.
        let geometric = matches!(
            op,
            TaOp::ShearX | TaOp::ShearY | TaOp::TranslateX | TaOp::TranslateY | TaOp::Rotate
        );
        if geometric {
            assert!(
                frac < 0.01,
                "{op:?} m={m}: {frac} of bytes differ (mean {mean})"
            );
        } else {
            assert!(
                max <= 1 && mean < 0.05,
                "{op:?} m={m}: mean {mean} max {max}"
            );
        }
    }
}

#[test]
fn color_jitter_ops_match_torchvision() {
    let (w, h) = (40u32, 30u32);
    let img = test_image(w, h, 400);
    let mut jobs = Vec::new();
    let mut mine = Vec::new();
    for (name, factors) in [
        ("brightness", &[0.6, 1.0, 1.4][..]),
        ("contrast", &[0.6, 1.4][..]),
        ("saturation", &[0.0, 0.6, 1.4][..]),
        ("hue", &[-0.3, 0.05, 0.5][..]),
    ] {
        for &f in factors {
            let mut out = img.clone();
            match name {
                "brightness" => ops::adjust_brightness(&mut out, f),
                "contrast" => ops::adjust_contrast(&mut out, f),
                "saturation" => ops::adjust_saturation(&mut out, f),
                _ => ops::adjust_hue(&mut out, f),
            }
            mine.push((name, f, out));
            jobs.push((
                json!({"op": "color", "width": w, "height": h, "name": name, "factor": f}),
                img.clone(),
            ));
        }
    }
    for ((name, f, a), b) in mine.iter().zip(oracle_many(jobs)) {
        let (mean, max) = diff(a, &b);
        eprintln!("{name} {f}: mean {mean:.4} max {max}");
        assert!(max <= 1 && mean < 0.05, "{name} {f}: mean {mean} max {max}");
    }
}

/// Two-sample Kolmogorov-Smirnov statistic.
fn ks(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / a.len() as f64 - j as f64 / b.len() as f64).abs());
    }
    d
}

type Feature = fn(&[f64; 4], (f64, f64)) -> f64;

#[test]
fn rrc_parameter_distribution_matches_torchvision() {
    let n = 20_000usize;
    let scale = (0.08, 1.0);
    let ratio = (3.0 / 4.0, 4.0 / 3.0);
    let sizes = [(500u32, 375u32), (200, 600)];
    let jobs = sizes
        .iter()
        .map(|&(w, h)| {
            (
                json!({"op": "rrc_params", "width": w, "height": h, "n": n, "seed": 0,
                       "scale": [scale.0, scale.1], "ratio": [ratio.0, ratio.1]}),
                Vec::new(),
            )
        })
        .collect();
    let outs = oracle_many(jobs);
    for (&(w, h), raw) in sizes.iter().zip(outs) {
        let theirs: Vec<[f64; 4]> = raw
            .chunks_exact(16)
            .map(|c| {
                let v =
                    |k: usize| i32::from_le_bytes(c[k * 4..k * 4 + 4].try_into().unwrap()) as f64;
                [v(0), v(1), v(2), v(3)]
            })
            .collect();
        assert_eq!(theirs.len(), n);
        let ours: Vec<[f64; 4]> = (0..n as u64)
            .map(|s| {
                let mut rng = SampleSeed::new(99, 0, s).rng();
                let c = brigade_augment::random_resized_crop_params(&mut rng, (w, h), scale, ratio);
                assert!(c.left + c.width <= w && c.top + c.height <= h, "{c:?}");
                [c.top as f64, c.left as f64, c.height as f64, c.width as f64]
            })
            .collect();
        let full = (f64::from(w), f64::from(h));
        let features: [(&str, Feature); 4] = [
            ("area", |p, f| p[2] * p[3] / (f.0 * f.1)),
            ("log_ratio", |p, _| (p[3] / p[2]).ln()),
            (
                "top",
                |p, f| if p[2] < f.1 { p[0] / (f.1 - p[2]) } else { 0.5 },
            ),
            (
                "left",
                |p, f| if p[3] < f.0 { p[1] / (f.0 - p[3]) } else { 0.5 },
            ),
        ];
        // 0.1% critical value of the two-sample KS test at n = m = 20000.
        let crit = 1.95 * (2.0 / n as f64).sqrt();
        for (name, f) in features {
            let a = ours.iter().map(|p| f(p, full)).collect();
            let b = theirs.iter().map(|p| f(p, full)).collect();
            let d = ks(a, b);
            eprintln!("{w}x{h} {name}: KS {d:.4} (crit {crit:.4})");
            assert!(d < crit, "{w}x{h} {name}: KS {d} >= {crit}");
        }
        // ranges: area fraction within scale, log ratio within ratio (up to
        // the rounding of w and h), except for the centre fallback.
        let mut fallbacks = 0;
        for p in &ours {
            let fr = p[2] * p[3] / (full.0 * full.1);
            if p[2] == full.1 && p[3] <= full.0 || p[3] == full.0 && p[2] <= full.1 {
                fallbacks += 1;
                continue;
            }
            let slack = 2.0 / p[2].min(p[3]);
            assert!(
                fr >= scale.0 * (1.0 - slack) && fr <= 1.0,
                "area {fr} {p:?}"
            );
            let lr = (p[3] / p[2]).ln();
            assert!(
                lr >= ratio.0.ln() - slack && lr <= ratio.1.ln() + slack,
                "log ratio {lr} {p:?}"
            );
        }
        assert!(fallbacks < n / 5, "{fallbacks} full-height/width crops");
    }
}

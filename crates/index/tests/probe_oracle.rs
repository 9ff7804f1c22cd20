//! Header probing against PIL: the oracle writes images in many encodings
//! (progressive and CMYK JPEG, large EXIF, lossy/lossless/extended WebP, PNG,
//! GIF, BMP, TIFF) and reports their size; our probe must agree.

use std::path::Path;
use std::process::Command;

use brigade_index::{probe_file, ImageFormat};

const SCRIPT: &str = r#"
import json, os, sys
from PIL import Image
out = sys.argv[1]
rows = []
def save(name, img, **kw):
    p = os.path.join(out, name)
    img.save(p, **kw)
    with Image.open(p) as im:
        rows.append({"name": name, "w": im.size[0], "h": im.size[1], "format": im.format})
rgb = Image.new("RGB", (333, 217), (10, 200, 30))
save("base.jpg", rgb, quality=90)
save("prog.jpg", Image.new("RGB", (1023, 7), (1, 2, 3)), progressive=True)
save("cmyk.jpg", Image.new("CMYK", (64, 480), (1, 2, 3, 4)))
save("gray.jpg", Image.new("L", (5, 3), 7))
exif = Image.Exif()
exif[0x010E] = "x" * 60000  # a ~60 KB APP1 segment before the frame header
save("exif.jpg", Image.new("RGB", (120, 80)), exif=exif.tobytes())
save("a.png", Image.new("RGBA", (4097, 2), (1, 2, 3, 4)))
save("p.png", Image.new("P", (31, 17)))
save("lossy.webp", rgb, quality=80)
save("lossless.webp", Image.new("RGB", (300, 200)), lossless=True)
save("alpha.webp", Image.new("RGBA", (77, 55), (1, 2, 3, 100)), quality=70)
save("exif.webp", rgb, exif=exif.tobytes())
save("a.gif", Image.new("P", (640, 3)))
save("a.bmp", Image.new("RGB", (19, 23)))
save("a.tiff", Image.new("RGB", (45, 67)))
print(json.dumps(rows))
"#;

fn python() -> String {
    std::env::var("BRIGADE_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[test]
fn probe_agrees_with_pil() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(python())
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run the oracle python {:?}: {e}", python()));
    assert!(
        out.status.success(),
        "the oracle (python + pillow) failed; run through scripts/with-env.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 14);
    for row in rows {
        let name = row["name"].as_str().unwrap();
        let p = probe_file(&dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let format = match row["format"].as_str().unwrap() {
            "JPEG" => ImageFormat::Jpeg,
            "PNG" => ImageFormat::Png,
            "WEBP" => ImageFormat::WebP,
            "GIF" => ImageFormat::Gif,
            "BMP" => ImageFormat::Bmp,
            "TIFF" => ImageFormat::Tiff,
            other => panic!("unexpected format {other}"),
        };
        assert_eq!(
            (p.format, p.width as u64, p.height as u64),
            (
                format,
                row["w"].as_u64().unwrap(),
                row["h"].as_u64().unwrap()
            ),
            "{name}"
        );
        assert_eq!(
            p.file_len,
            std::fs::metadata(dir.path().join(name)).unwrap().len()
        );
    }
}

#[test]
fn truncated_headers_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let img = image::RgbImage::new(50, 40);
    let full = dir.path().join("full.jpg");
    img.save(&full).unwrap();
    let bytes = std::fs::read(&full).unwrap();
    let png = dir.path().join("full.png");
    img.save(&png).unwrap();
    let png_bytes = std::fs::read(&png).unwrap();
    // Every prefix of a JPEG and a PNG header: error or the right answer.
    for (data, ext) in [(&bytes, "jpg"), (&png_bytes, "png")] {
        for cut in 1..data.len().min(700) {
            let p = dir.path().join(format!("cut.{ext}"));
            std::fs::write(&p, &data[..cut]).unwrap();
            if let Ok(probe) = probe_file(Path::new(&p)) {
                assert_eq!((probe.width, probe.height), (50, 40), "{ext} cut at {cut}");
            }
        }
    }
}

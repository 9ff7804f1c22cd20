"""Writes odd image files and Pillow's decoding of each (the oracle).

usage: gen_images.py OUTDIR

For every case NAME it writes OUTDIR/NAME.<ext> and, unless the file must be
rejected, OUTDIR/NAME.rgb: the expected upright RGB8 pixels, computed as
``ImageOps.exif_transpose(img).convert("RGB")`` (or with numpy where Pillow
itself is wrong, e.g. 16-bit samples). OUTDIR/manifest.json lists
{name, file, expect: "ok"|"error", width, height, tol_max, tol_mean}.
"""
import io
import json
import os
import struct
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(1234)
cases = []

# JPEG backends differ slightly (IDCT, chroma upsampling): stated tolerances
JPEG_TOL = (6, 0.6)
EXACT = (0, 0.0)


def photo(w, h):
    """A smooth synthetic picture with edges (JPEG-friendly but not trivial)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 120 * np.sin(x / 9.0) * np.cos(y / 13.0)
    g = 255 * x / max(w - 1, 1)
    b = np.where((x // 16 + y // 16) % 2 == 0, 40, 210)
    img = np.stack([r, g, b], axis=-1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def expected(path):
    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))


def add(name, ext, data, expect_arr=None, tol=EXACT, expect="ok"):
    fname = f"{name}.{ext}"
    p = os.path.join(out, fname)
    with open(p, "wb") as f:
        f.write(data)
    entry = {"name": name, "file": fname, "expect": expect}
    if expect == "ok":
        arr = expected(p) if expect_arr is None else expect_arr
        arr = np.ascontiguousarray(arr, dtype=np.uint8)
        assert arr.ndim == 3 and arr.shape[2] == 3, (name, arr.shape)
        with open(os.path.join(out, f"{name}.rgb"), "wb") as f:
            f.write(arr.tobytes())
        entry.update(width=int(arr.shape[1]), height=int(arr.shape[0]),
                     tol_max=tol[0], tol_mean=tol[1])
    cases.append(entry)


def save(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


base = photo(97, 61)  # odd sizes exercise MCU padding
im = Image.fromarray(base)

# --- JPEG -----------------------------------------------------------------
add("jpeg_420", "jpg", save(im, "JPEG", quality=90), tol=JPEG_TOL)
add("jpeg_444", "jpg", save(im, "JPEG", quality=95, subsampling=0), tol=JPEG_TOL)
add("jpeg_422", "jpg", save(im, "JPEG", quality=90, subsampling=1), tol=JPEG_TOL)
add("jpeg_progressive", "jpg", save(im, "JPEG", quality=85, progressive=True), tol=JPEG_TOL)
add("jpeg_gray", "jpg", save(im.convert("L"), "JPEG", quality=90), tol=JPEG_TOL)
cmyk = save(im.convert("CMYK"), "JPEG", quality=95)
add("jpeg_cmyk_adobe", "jpg", cmyk, tol=JPEG_TOL)


def strip_app14(data):
    """Removes the Adobe APP14 segment (Pillow still assumes inverted ink values)."""
    i = 2
    while i + 4 <= len(data):
        assert data[i] == 0xFF
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xEE:
            return data[:i] + data[i + 2 + length:]
        if marker == 0xDA:
            break
        i += 2 + length
    raise AssertionError("no APP14")


def patch_app14_transform(data, value):
    i = 2
    while True:
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker == 0xEE:
            seg = bytearray(data)
            seg[i + 4 + 11] = value
            return bytes(seg)
        i += 2 + length


add("jpeg_cmyk_plain", "jpg", strip_app14(cmyk), tol=JPEG_TOL)
# transform=2 declares YCCK: decoders must run the YCC->RGB step on it
add("jpeg_ycck", "jpg", patch_app14_transform(cmyk, 2), tol=JPEG_TOL)

for o in range(1, 9):
    exif = Image.Exif()
    exif[0x0112] = o
    add(f"jpeg_exif_{o}", "jpg", save(im, "JPEG", quality=92, exif=exif), tol=JPEG_TOL)

full = save(im, "JPEG", quality=90)
add("jpeg_truncated_half", "jpg", full[: len(full) // 2], expect="error")
add("jpeg_truncated_90", "jpg", full[: len(full) * 9 // 10], expect="error")
add("jpeg_headers_only", "jpg", full[:200], expect="error")
bad = bytearray(full)
sos = bytes(bad).index(b"\xff\xda")
for k in range(sos + 40, len(bad) - 200, 7):
    bad[k] = 0xFF  # markers sprayed through the entropy-coded data
add("jpeg_corrupt_middle", "jpg", bytes(bad), expect="error")

# --- PNG ------------------------------------------------------------------
add("png_rgb", "png", save(im, "PNG"))
rgba = np.dstack([base, rng.integers(0, 256, base.shape[:2], dtype=np.uint8)])
add("png_rgba", "png", save(Image.fromarray(rgba, "RGBA"), "PNG"))  # alpha dropped
add("png_gray", "png", save(im.convert("L"), "PNG"))
add("png_gray_alpha", "png", save(im.convert("LA"), "PNG"))
add("png_palette", "png", save(im.quantize(64), "PNG"))
pal = im.quantize(16)
add("png_palette_trns", "png", save(pal, "PNG", transparency=3))
exif = Image.Exif()
exif[0x0112] = 6
add("png_exif_6", "png", save(im, "PNG", exif=exif))


def png_chunk(kind, payload):
    c = kind + payload
    return struct.pack(">I", len(payload)) + c + struct.pack(">I", zlib.crc32(c) & 0xFFFFFFFF)


def png16(arr16):
    """16-bit PNG written by hand (Pillow cannot write 48-bit RGB)."""
    h, w = arr16.shape[:2]
    ctype = 2 if arr16.ndim == 3 else 0
    raw = b"".join(b"\x00" + arr16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))


def to8(a16):
    return ((a16.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


rgb16 = rng.integers(0, 65536, (23, 31, 3), dtype=np.uint16)
add("png_rgb16", "png", png16(rgb16), expect_arr=to8(rgb16))
g16 = rng.integers(0, 65536, (19, 29), dtype=np.uint16)
add("png_gray16", "png", png16(g16), expect_arr=np.repeat(to8(g16)[:, :, None], 3, axis=2))
png = save(im, "PNG")
add("png_truncated", "png", png[: len(png) // 2], expect="error")

# --- WebP, GIF, BMP, TIFF -------------------------------------------------
add("webp_lossless", "webp", save(im, "WEBP", lossless=True))
add("webp_lossy", "webp", save(im, "WEBP", quality=90), tol=(4, 0.5))
webp = save(im, "WEBP", lossless=True)
add("webp_truncated", "webp", webp[: len(webp) // 2], expect="error")
add("gif", "gif", save(im.quantize(200), "GIF"))
gif = save(im.quantize(200), "GIF")
add("gif_truncated", "gif", gif[: len(gif) // 2], expect="error")
add("bmp", "bmp", save(im, "BMP"))
bmp = save(im, "BMP")
add("bmp_truncated", "bmp", bmp[: len(bmp) // 2], expect="error")
add("tiff", "tif", save(im, "TIFF"))

# --- not images -----------------------------------------------------------
add("empty", "jpg", b"", expect="error")
add("text", "jpg", b"this is not an image at all\n" * 4, expect="error")
add("noise", "png", rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(), expect="error")

# --- real photographs shipped with scikit-image / scikit-learn -----------
import skimage
import sklearn

sk = os.path.join(os.path.dirname(skimage.__file__), "data")
sl = os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images")
for d, names in [(sk, ["astronaut.png", "chelsea.png", "coffee.png", "camera.png",
                       "logo.png", "retina.jpg", "rocket.jpg", "hubble_deep_field.jpg",
                       "no_time_for_that_tiny.gif"]),
                 (sl, ["china.jpg", "flower.jpg"])]:
    for n in names:
        p = os.path.join(d, n)
        if not os.path.exists(p):
            continue
        stem, ext = os.path.splitext(n)
        with open(p, "rb") as f:
            data = f.read()
        tol = JPEG_TOL if ext == ".jpg" else EXACT
        add(f"real_{stem}", ext[1:], data, tol=tol)

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(cases, f, indent=1)
print(len(cases), "cases")

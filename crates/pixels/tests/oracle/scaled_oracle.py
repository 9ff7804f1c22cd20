"""Writes OUT/big.jpg (803x601, q90) and Pillow's DCT-scaled decodes of it
(Image.draft, which uses libjpeg's scale_denom like TurboJPEG):
OUT/draft_<denom>.rgb with OUT/draft_<denom>.txt holding "W H".
"""
import io
import os
import sys

import numpy as np
from PIL import Image

out = sys.argv[1]
y, x = np.mgrid[0:601, 0:803].astype(np.float32)
img = np.stack([127 + 120 * np.sin(x / 23.0), 255 * x / 802, 128 + 100 * np.cos(y / 17.0)], -1)
img = np.clip(img, 0, 255).astype(np.uint8)
b = io.BytesIO()
Image.fromarray(img).save(b, "JPEG", quality=90)
data = b.getvalue()
open(os.path.join(out, "big.jpg"), "wb").write(data)
for denom in (2, 4, 8):
    im = Image.open(io.BytesIO(data))
    im.draft("RGB", (803 // denom, 601 // denom))  # Pillow: scale = min(w // rw, h // rh)
    a = np.asarray(im.convert("RGB"))
    a.tofile(os.path.join(out, f"draft_{denom}.rgb"))
    open(os.path.join(out, f"draft_{denom}.txt"), "w").write(f"{a.shape[1]} {a.shape[0]}")

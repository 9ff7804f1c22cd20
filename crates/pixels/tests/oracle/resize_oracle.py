"""Reference resizes for brigade-pixels tests.

usage: resize_oracle.py SRC.rgb W H OUTDIR DW1xDH1 [DW2xDH2 ...]
Writes OUTDIR/bilinear_DWxDH.rgb (torchvision v2 resize, BILINEAR,
antialias=True, on a uint8 tensor) and OUTDIR/lanczos_DWxDH.rgb (Pillow
LANCZOS) for each size.
"""
import os
import sys

import numpy as np
import torch
from PIL import Image
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

src, w, h, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
arr = np.fromfile(src, dtype=np.uint8).reshape(h, w, 3)
t = torch.from_numpy(arr).permute(2, 0, 1).contiguous()
for size in sys.argv[5:]:
    dw, dh = (int(v) for v in size.split("x"))
    r = F.resize(t, [dh, dw], interpolation=InterpolationMode.BILINEAR, antialias=True)
    r.permute(1, 2, 0).contiguous().numpy().tofile(os.path.join(out, f"bilinear_{dw}x{dh}.rgb"))
    p = np.asarray(Image.fromarray(arr).resize((dw, dh), Image.LANCZOS))
    np.ascontiguousarray(p).tofile(os.path.join(out, f"lanczos_{dw}x{dh}.rgb"))

"""Numerical oracle for brigade-augment's tests (torch / torchvision).

usage: oracle.py DIR   -- DIR/args.json is a list of jobs; job k reads its
input image (RGB8 HWC, size in the job) from DIR/in{k}.bin and writes its
result to DIR/out{k}.bin. One process serves a whole test (torch imports are slow).
"""
import json
import math
import sys

import numpy as np
import torch
import torchvision
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as F

torch.set_num_threads(1)


def load(d, a):
    raw = np.fromfile(f"{d}/in{a['k']}.bin", dtype=np.uint8)
    img = raw.reshape(a["height"], a["width"], 3)
    return torch.from_numpy(img.copy()).permute(2, 0, 1).contiguous()  # CHW uint8


def save(d, a, t):
    if t.dtype != torch.uint8:
        raise SystemExit(f"oracle produced {t.dtype}")
    t.permute(1, 2, 0).contiguous().numpy().tofile(f"{d}/out{a['k']}.bin")


def fastai_grid(a):
    """fastai v1's flow for one draw, re-derived from its source."""
    H, W = a["height"], a["width"]
    oh, ow = a["out_h"], a["out_w"]
    ratio = min(H / oh, W / ow)
    gh, gw = max(int(round(H / ratio)), oh), max(int(round(W / ratio)), ow)
    lin_x = torch.linspace(-1, 1, gw, dtype=torch.float64) if gw > 1 else torch.tensor([-1.0], dtype=torch.float64)
    lin_y = torch.linspace(-1, 1, gh, dtype=torch.float64) if gh > 1 else torch.tensor([-1.0], dtype=torch.float64)
    grid = torch.empty(gh, gw, 2, dtype=torch.float64)
    grid[..., 0] = lin_x[None, :]
    grid[..., 1] = lin_y[:, None]
    if a["flip"]:
        grid[..., 0] *= -1
    # symmetric warp (TfmCoord, order 4)
    m = a["warp"]
    orig = [[-1, -1], [-1, 1], [1, -1], [1, 1]]
    targ = [[-1 - m[3], -1 - m[1]], [-1 - m[2], 1 + m[1]], [1 + m[3], -1 - m[0]], [1 + m[2], 1 + m[0]]]
    rows = []
    for p1, p2 in zip(targ, orig):
        rows.append([p1[0], p1[1], 1, 0, 0, 0, -p2[0] * p1[0], -p2[0] * p1[1]])
        rows.append([0, 0, 0, p1[0], p1[1], 1, -p2[1] * p1[0], -p2[1] * p1[1]])
    A = torch.tensor(rows, dtype=torch.float64)
    B = torch.tensor(orig, dtype=torch.float64).view(8, 1)
    coeffs = torch.linalg.solve(A, B)[:, 0]
    coeffs = torch.cat([coeffs, torch.tensor([1.0], dtype=torch.float64)]).view(3, 3)
    flow = grid.view(-1, 2)
    flow = torch.addmm(coeffs[:, 2], flow, coeffs[:, :2].t())
    flow = flow[:, :2] / flow[:, 2:3]
    # rotate then zoom (TfmAffine, order 5): affine_mat = R @ Z
    ang = a["rotate_deg"] * math.pi / 180
    R = torch.tensor([[math.cos(ang), -math.sin(ang), 0.0], [math.sin(ang), math.cos(ang), 0.0], [0, 0, 1.0]], dtype=torch.float64)
    scale, row_pct, col_pct = a["zoom"]
    s = 1 - 1 / scale
    Z = torch.tensor([[1 / scale, 0, s * (2 * col_pct - 1)], [0, 1 / scale, s * (2 * row_pct - 1)], [0, 0, 1.0]], dtype=torch.float64)
    M = R @ Z
    M[0, 1] *= gh / gw
    M[1, 0] *= gw / gh
    flow = torch.addmm(M[:2, 2], flow, M[:2, :2].t()).view(gh, gw, 2)
    # crop_pad (order 99): the pixel crop of the sampled grid
    row = int((gh - oh + 1) * a["crop_pct"][0])
    col = int((gw - ow + 1) * a["crop_pct"][1])
    return flow[row:row + oh, col:col + ow]


def main():
    d = sys.argv[1]
    with open(f"{d}/args.json") as f:
        jobs = json.load(f)
    for k, a in enumerate(jobs):
        a["k"] = k
        run(d, a)


def run(d, a):
    op = a["op"]
    if op == "rrc_params":
        img = torch.zeros(3, a["height"], a["width"], dtype=torch.uint8)
        torch.manual_seed(a["seed"])
        out = []
        for _ in range(a["n"]):
            i, j, h, w = T.RandomResizedCrop.get_params(img, scale=a["scale"], ratio=a["ratio"])
            out.extend([i, j, h, w])
        np.asarray(out, dtype=np.int32).tofile(f"{d}/out{a['k']}.bin")
        return
    img = load(d, a)
    if op == "resized_crop":
        out = F.resized_crop(img, a["top"], a["left"], a["h"], a["w"], [a["out_h"], a["out_w"]], antialias=True)
        if a["flip"]:
            out = F.horizontal_flip(out)
    elif op == "eval":
        s = a["resize"]
        r = F.resize(img, [s], antialias=True)
        if a["pos"] == "center":
            out = F.center_crop(r, [a["out_h"], a["out_w"]])
        else:
            crops = F.five_crop(r, [a["out_h"], a["out_w"]])
            out = crops[["top_left", "top_right", "bottom_left", "bottom_right"].index(a["pos"])]
        if a["flip"]:
            out = F.horizontal_flip(out)
    elif op == "fastai":
        g = fastai_grid(a)
        x = img.to(torch.float64)[None]
        out = torch.nn.functional.grid_sample(x, g[None], mode="bilinear", padding_mode="reflection", align_corners=True)[0]
        out = out.round().clamp(0, 255).to(torch.uint8)
    elif op == "ta":
        m = a["magnitude"]
        aug = T.TrivialAugmentWide()
        out = aug._apply_image_or_video_transform(img, a["name"], m, interpolation=T.InterpolationMode.NEAREST, fill=aug._fill)
    elif op == "color":
        fns = {"brightness": F.adjust_brightness, "contrast": F.adjust_contrast, "saturation": F.adjust_saturation, "hue": F.adjust_hue}
        out = fns[a["name"]](img, a["factor"])
    else:
        raise SystemExit(f"unknown op {op}")
    save(d, a, out)


if __name__ == "__main__":
    main()

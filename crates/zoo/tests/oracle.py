"""Numerical oracle for brigade-zoo's parity tests (run by tests/parity.rs).

usage: oracle.py parity ARCH OUT_DIR NUM_CLASSES
    Builds the torchvision model (timm-named mirror for resnet50d) with seeded
    random weights and randomised BatchNorm statistics, writes
    OUT_DIR/model.pth (torch.save(model.state_dict())), OUT_DIR/model.safetensors
    and OUT_DIR/io.safetensors {input, eval, train}: a seeded 2x3x64x64 input
    and the logits in eval mode and in train mode (batch statistics; dropout
    and stochastic depth are built with p=0 so train mode is deterministic).

usage: oracle.py badfiles OUT_DIR
    Writes files the loader must refuse: forbidden.pth (a torch-style zip whose
    data.pkl calls os.system), wrong_shape.pth (a resnet18 state dict with one mis-shaped tensor),
    resnet18_1000.pth (a plain 1000-class resnet18), nested.pth (the state
    dict under a "state_dict" key, with a non-contiguous tensor and a shared
    storage), and legacy.pth (resnet18_1000.pth in the pre-1.6 non-zip
    format, which must load the same).

usage: oracle.py legacy OUT_DIR
    Files for tests/legacy.rs (the legacy, pre-1.6 non-zip torch.save format):
    dtypes_{legacy,legacy_p4,zip}.pth and dtypes.safetensors (one state dict
    of every dtype, a 0-d, an empty, strided views and a shared storage;
    contiguous copies in the safetensors), checkpoint_legacy.pth (that state
    dict under "model" next to an optimizer state), args_legacy.pth (a
    checkpoint holding an argparse.Namespace), mnv3_{legacy,zip}.pth (a
    seeded, 1000-class mobilenet_v3_large with randomised BatchNorm) with
    mnv3_io.safetensors {input, eval}, and mnv3_layout.txt ("pickle_end N"
    for each of the file's five pickles, by pickletools, then "len N").

usage: oracle.py params
    Prints "name count" per architecture (torchvision's count of the
    1000-class model).

usage: oracle.py all OUT_DIR ARCH:CLASSES...
    All of the above in one process (one torch import): OUT_DIR/<arch>/,
    OUT_DIR/bad/ and OUT_DIR/params.txt.
"""

import io
import os
import sys
import zipfile

import torch
import torch.nn as nn
import torchvision
from safetensors.torch import save_file


def resnet50d(num_classes):
    """timm resnet50d, mirrored on torchvision's resnet50 with timm's names."""
    m = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    m.conv1 = nn.Sequential(
        nn.Conv2d(3, 32, 3, 2, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 32, 3, 1, 1, bias=False),
        nn.BatchNorm2d(32),
        nn.ReLU(inplace=True),
        nn.Conv2d(32, 64, 3, 1, 1, bias=False),
    )
    for layer in [m.layer1, m.layer2, m.layer3, m.layer4]:
        for blk in layer:
            if blk.downsample is not None:
                conv = blk.downsample[0]
                stride = conv.stride[0]
                pool = (
                    nn.AvgPool2d(2, stride, ceil_mode=True, count_include_pad=False)
                    if stride > 1
                    else nn.Identity()
                )
                blk.downsample = nn.Sequential(
                    pool,
                    nn.Conv2d(conv.in_channels, conv.out_channels, 1, 1, bias=False),
                    nn.BatchNorm2d(conv.out_channels),
                )
    return m


def build(arch, num_classes):
    tv = torchvision.models
    if arch == "resnet50d":
        return resnet50d(num_classes)
    if arch.startswith("efficientnet"):
        return getattr(tv, arch)(weights=None, num_classes=num_classes, dropout=0.0, stochastic_depth_prob=0.0)
    if arch.startswith("mobilenet"):
        return getattr(tv, arch)(weights=None, num_classes=num_classes, dropout=0.0)
    return getattr(tv, arch)(weights=None, num_classes=num_classes)


def randomise(model, g):
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = mod.num_features
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
                mod.num_batches_tracked.fill_(7)


def parity(arch, out, num_classes):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    model = build(arch, num_classes)
    randomise(model, g)
    sd = model.state_dict()
    torch.save(sd, os.path.join(out, "model.pth"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "model.safetensors"))
    x = torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        model.eval()
        y_eval = model(x)
        model.train()
        y_train = model(x)
    save_file({"input": x, "eval": y_eval, "train": y_train}, os.path.join(out, "io.safetensors"))


def timm_effnet_name(k):
    """torchvision efficientnet key -> timm key (independent of the Rust mapping)."""
    simple = {"features.0.0": "conv_stem", "features.0.1": "bn1", "features.8.0": "conv_head",
              "features.8.1": "bn2", "classifier.1": "classifier"}
    mod, leaf = k.rsplit(".", 1)
    if mod in simple:
        return simple[mod] + "." + leaf
    p = mod.split(".")  # features S I block J [K]
    stage, idx, j, rest = int(p[1]) - 1, p[2], int(p[4]), p[5]
    if stage == 0:
        names = [{"0": "conv_dw", "1": "bn1"}, {"fc1": "se.conv_reduce", "fc2": "se.conv_expand"},
                 {"0": "conv_pw", "1": "bn2"}]
    else:
        names = [{"0": "conv_pw", "1": "bn1"}, {"0": "conv_dw", "1": "bn2"},
                 {"fc1": "se.conv_reduce", "fc2": "se.conv_expand"}, {"0": "conv_pwl", "1": "bn3"}]
    return f"blocks.{stage}.{idx}.{names[j][rest]}.{leaf}"


def write_timm_copy(out):
    from safetensors.torch import load_file
    sd = load_file(os.path.join(out, "model.safetensors"))
    save_file({timm_effnet_name(k): v for k, v in sd.items()}, os.path.join(out, "model_timm.safetensors"))


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def badfiles(out):
    torch.manual_seed(0)
    m = torchvision.models.resnet18(weights=None, num_classes=1000)
    sd = m.state_dict()
    torch.save(sd, os.path.join(out, "resnet18_1000.pth"))
    torch.save(sd, os.path.join(out, "legacy.pth"), _use_new_zipfile_serialization=False)
    bad = dict(sd)
    bad["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    torch.save(bad, os.path.join(out, "wrong_shape.pth"))
    # A state dict nested in a checkpoint dict, with a transposed
    # (non-contiguous) view and two tensors sharing one storage.
    nested = {k: v.clone() for k, v in sd.items()}
    nested["fc.weight"] = sd["fc.weight"].t().contiguous().t()
    base = torch.arange(128, dtype=torch.float32)
    nested["bn1.weight"] = base[:64]
    nested["bn1.bias"] = base[64:]
    torch.save({"epoch": 3, "state_dict": nested}, os.path.join(out, "nested.pth"))
    save_file({"fc.weight": nested["fc.weight"].contiguous()}, os.path.join(out, "fc_only.safetensors"))
    # Same layout as torch.save, but data.pkl runs os.system when unpickled.
    import pickle

    payload = pickle.dumps(Evil(), protocol=2)
    with zipfile.ZipFile(os.path.join(out, "forbidden.pth"), "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")


def dtype_state_dict():
    from collections import OrderedDict

    g = torch.Generator().manual_seed(3)
    sd = OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f64"] = torch.randn(5, generator=g, dtype=torch.float64)
    sd["f16"] = torch.randn(2, 3, generator=g).half()
    sd["bf16"] = torch.randn(4, generator=g).bfloat16()
    sd["bn.num_batches_tracked"] = torch.tensor(7)
    sd["i32"] = torch.randint(-1000, 1000, (6,), generator=g, dtype=torch.int32)
    sd["i16"] = torch.randint(-1000, 1000, (2, 2), generator=g, dtype=torch.int16)
    sd["i8"] = torch.randint(-100, 100, (3,), generator=g, dtype=torch.int8)
    sd["u8"] = torch.randint(0, 255, (3,), generator=g, dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.empty(0, 3)
    sd["param"] = nn.Parameter(torch.randn(3, generator=g))
    grid = torch.randn(6, 5, generator=g)
    sd["transposed"] = grid.t()
    sd["stepped"] = grid[1::2, 1:4]
    base = torch.arange(40, dtype=torch.float32) * 0.5
    sd["shared_a"] = base[:16]
    sd["shared_b"] = base[16:]
    sd["shared_c"] = base.view(5, 8)[1:4, 2:7]
    return sd


def legacy(out):
    import argparse
    import pickletools

    sd = dtype_state_dict()
    torch.save(sd, os.path.join(out, "dtypes_legacy.pth"), _use_new_zipfile_serialization=False)
    torch.save(sd, os.path.join(out, "dtypes_legacy_p4.pth"), _use_new_zipfile_serialization=False,
               pickle_protocol=4)
    torch.save(sd, os.path.join(out, "dtypes_zip.pth"))
    save_file({k: v.detach().contiguous() for k, v in sd.items()}, os.path.join(out, "dtypes.safetensors"))
    # The state dict next to an optimizer state whose f64 buffers are
    # storages in the same list (they must be skipped, not read).
    opt = {"state": {i: {"momentum_buffer": torch.randn(7 + i, dtype=torch.float64)} for i in range(3)},
           "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1, 2]}]}
    torch.save({"epoch": 12, "model": sd, "optimizer": opt}, os.path.join(out, "checkpoint_legacy.pth"),
               _use_new_zipfile_serialization=False)
    torch.save({"args": argparse.Namespace(lr=0.1), "state_dict": sd}, os.path.join(out, "args_legacy.pth"),
               _use_new_zipfile_serialization=False)

    torch.manual_seed(0)
    g = torch.Generator().manual_seed(5)
    model = build("mobilenet_v3_large", 1000)
    randomise(model, g)
    msd = model.state_dict()
    path = os.path.join(out, "mnv3_legacy.pth")
    torch.save(msd, path, _use_new_zipfile_serialization=False)
    torch.save(msd, os.path.join(out, "mnv3_zip.pth"))
    x = torch.randn(2, 3, 64, 64, generator=g)
    with torch.no_grad():
        model.eval()
        y = model(x)
    save_file({"input": x, "eval": y}, os.path.join(out, "mnv3_io.safetensors"))
    with open(path, "rb") as f, open(os.path.join(out, "mnv3_layout.txt"), "w") as lay:
        for _ in range(5):
            for _op in pickletools.genops(f):
                pass
            print("pickle_end", f.tell(), file=lay)
        print("len", os.path.getsize(path), file=lay)


def params(out=sys.stdout):
    for arch in ["resnet18", "resnet34", "resnet50", "efficientnet_b0", "efficientnet_b2", "mobilenet_v3_large"]:
        m = getattr(torchvision.models, arch)(weights=None)
        print(arch, sum(p.numel() for p in m.parameters()), file=out)
    print("resnet50d", sum(p.numel() for p in resnet50d(1000).parameters()), file=out)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "parity":
        parity(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif cmd == "badfiles":
        badfiles(sys.argv[2])
    elif cmd == "params":
        params()
    elif cmd == "legacy":
        legacy(sys.argv[2])
    elif cmd == "all":
        root = sys.argv[2]
        for spec in sys.argv[3:]:
            arch, classes = spec.split(":")
            os.makedirs(os.path.join(root, arch), exist_ok=True)
            parity(arch, os.path.join(root, arch), int(classes))
            if arch.startswith("efficientnet"):
                write_timm_copy(os.path.join(root, arch))
        os.makedirs(os.path.join(root, "bad"), exist_ok=True)
        badfiles(os.path.join(root, "bad"))
        with open(os.path.join(root, "params.txt"), "w") as f:
            params(f)
    else:
        sys.exit(f"unknown command {cmd}")

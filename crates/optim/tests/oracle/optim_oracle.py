"""Numerical oracle for brigade-optim's tests (run by the Rust tests with the venv python).

usage: optim_oracle.py optim SPEC.json INPUT.safetensors OUTPUT.safetensors
       optim_oracle.py losses INPUT.safetensors OUTPUT.safetensors

`optim`: for every case in SPEC, runs torch.optim (sgd/adamw/radam) or a reference
implementation written here from the published algorithms (ranger = Ranger 2020 with the
warm-up aliasing bug fixed; lookahead = Zhang et al. over torch.optim.SGD/AdamW) on the
initial parameters `p<j>` with gradients `g<step>.p<j>`, writing `<case>.<step>.p<j>`.
"""
import json
import math
import sys

import torch
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)


def torch_groups(case, params):
    """Our groups -> torch param groups (params without decay get weight_decay 0)."""
    out = []
    for g in case["groups"]:
        for decay in (True, False):
            ps = [params[n] for n in g["params"] if case["decay"][n] == decay]
            if ps:
                d = {"params": ps, "lr": g["lr"], "weight_decay": g["wd"] if decay else 0.0}
                out.append((d, g["momentum"]))
    return out


def make_torch_opt(kind, cfg, case, params):
    groups = []
    for d, mom in torch_groups(case, params):
        if kind == "sgd":
            d["momentum"] = mom
        else:
            d["betas"] = (mom, cfg["beta2"])
        groups.append(d)
    if kind == "sgd":
        return torch.optim.SGD(groups, lr=0.1, momentum=0.9, dampening=cfg["dampening"], nesterov=cfg["nesterov"], foreach=False)
    if kind == "adamw":
        return torch.optim.AdamW(groups, lr=0.1, eps=cfg["eps"], foreach=False)
    if kind == "radam":
        return torch.optim.RAdam(groups, lr=0.1, eps=cfg["eps"], decoupled_weight_decay=cfg["decoupled"], foreach=False)
    raise ValueError(kind)


class Lookahead:
    """Zhang et al. 2019, per-parameter counters, slow copy taken at a parameter's first step."""

    def __init__(self, inner, params, k, alpha):
        self.inner, self.params, self.k, self.alpha = inner, params, k, alpha
        self.slow, self.count = {}, {}

    def step(self):
        for n, p in self.params.items():
            if n not in self.slow:
                self.slow[n] = p.detach().clone()
                self.count[n] = 0
        self.inner.step()
        with torch.no_grad():
            for n, p in self.params.items():
                self.count[n] += 1
                if self.count[n] % self.k == 0:
                    s = self.slow[n]
                    s.add_(p - s, alpha=self.alpha)
                    p.copy_(s)


class RangerRef:
    """Ranger 2020 (lessw2020/Ranger-Deep-Learning-Optimizer, ranger2020.py): RAdam +
    Lookahead + gradient centralisation on dim > 1. Written from the published step, with
    one change: in warm-up (N_sma <= threshold) the update direction is a COPY of exp_avg
    (the published code aliases it, and the in-place weight decay then corrupts exp_avg).
    Weight decay strength per parameter (0 for parameters without decay)."""

    def __init__(self, params, wd_of, lr_of, cfg):
        self.params, self.wd_of, self.lr_of, self.cfg = params, wd_of, lr_of, cfg
        self.state = {}

    @torch.no_grad()
    def step(self):
        c = self.cfg
        beta1, beta2 = c["beta1"], c["beta2"]
        for n, p in self.params.items():
            grad = p.grad.clone()
            st = self.state.get(n)
            if st is None:
                st = self.state[n] = {"step": 0, "exp_avg": torch.zeros_like(p),
                                      "exp_avg_sq": torch.zeros_like(p), "slow": p.clone()}
            if c["gc"] and grad.dim() > 1:
                grad.add_(-grad.mean(dim=tuple(range(1, grad.dim())), keepdim=True))
            st["step"] += 1
            t = st["step"]
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
            beta2_t = beta2 ** t
            n_sma_max = 2 / (1 - beta2) - 1
            n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
            if n_sma > c["thr"]:
                step_size = math.sqrt((1 - beta2_t) * (n_sma - 4) / (n_sma_max - 4) * (n_sma - 2) / n_sma
                                      * n_sma_max / (n_sma_max - 2)) / (1 - beta1 ** t)
                denom = exp_avg_sq.sqrt().add_(c["eps"])
                g_grad = exp_avg / denom
            else:
                step_size = 1.0 / (1 - beta1 ** t)
                g_grad = exp_avg.clone()  # the fix (published: `G_grad = exp_avg`)
            wd = self.wd_of[n]
            if wd != 0:
                g_grad.add_(p, alpha=wd)
            p.add_(g_grad, alpha=-step_size * self.lr_of[n])
            if t % c["k"] == 0:
                slow = st["slow"]
                slow.add_(p - slow, alpha=c["alpha"])
                p.copy_(slow)


def run_optim(spec_path, inp_path, out_path):
    spec = json.load(open(spec_path))
    data = load_file(inp_path)
    out = {}
    for case in spec["cases"]:
        dtype = torch.float64 if case["dtype"] == "f64" else torch.float32
        names = sorted(n for n in data if n.startswith("p"))
        params = {n: data[n].to(dtype).clone().requires_grad_(True) for n in names}
        kind, cfg = case["opt"], case["cfg"]
        if kind == "ranger":
            wd_of, lr_of = {}, {}
            for g in case["groups"]:
                for n in g["params"]:
                    wd_of[n] = g["wd"] if case["decay"][n] else 0.0
                    lr_of[n] = g["lr"]
            opt = RangerRef(params, wd_of, lr_of, cfg)
        elif kind.startswith("lookahead_"):
            inner = make_torch_opt(kind[len("lookahead_"):], cfg, case, params)
            opt = Lookahead(inner, params, cfg["k"], cfg["alpha"])
        else:
            opt = make_torch_opt(kind, cfg, case, params)
        for s in range(spec["steps"]):
            for n, p in params.items():
                p.grad = data[f"g{s}.{n}"].to(dtype).clone()
            opt.step()
            for n, p in params.items():
                out[f"{case['name']}.{s}.{n}"] = p.detach().clone().contiguous()
    save_file(out, out_path)


def run_losses(inp_path, out_path):
    import torch.nn.functional as F
    d = load_file(inp_path)
    out = {}
    logits = d["logits"].clone().requires_grad_(True)
    loss = F.cross_entropy(logits, d["targets"], label_smoothing=0.1)
    loss.backward()
    out["ls_loss"] = loss.detach().reshape(1)
    out["ls_grad"] = logits.grad.clone()
    loss0 = F.cross_entropy(logits.detach(), d["targets"])
    out["ce_loss"] = loss0.reshape(1)
    for tag, norm in (("l2", 2.0), ("inf", float("inf"))):
        ps = []
        for j in range(3):
            p = torch.zeros_like(d[f"cg{j}"], requires_grad=True)
            p.grad = d[f"cg{j}"].clone()
            ps.append(p)
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm=float(d["max_norm"].item()), norm_type=norm)
        out[f"clip_{tag}_total"] = total.reshape(1)
        for j, p in enumerate(ps):
            out[f"clip_{tag}_{j}"] = p.grad.clone()
    save_file(out, out_path)


if __name__ == "__main__":
    if sys.argv[1] == "optim":
        run_optim(*sys.argv[2:5])
    elif sys.argv[1] == "losses":
        run_losses(*sys.argv[2:4])
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]}")

"""PyTorch eager peer of `brigade bench-train`: the same model, batch and
optimizer step (forward, cross-entropy, backward, AdamW step) timed the same
way. Prints one JSON line: {"steps_per_s": ..., "median_ms": ..., "times_ms": [...]}."""
import argparse, json, time
import torch, torchvision

p = argparse.ArgumentParser()
p.add_argument("--arch", default="resnet18")
p.add_argument("--size", type=int, default=128)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--warmup", type=int, default=2)
p.add_argument("--classes", type=int, default=101)
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads > 0:
    torch.set_num_threads(a.threads)
torch.manual_seed(0)
model = getattr(torchvision.models, a.arch)(num_classes=a.classes)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.99), eps=1e-6, weight_decay=1e-2, foreach=True)
x = torch.randn(a.batch, 3, a.size, a.size)
y = torch.randint(0, a.classes, (a.batch,))
times = []
for i in range(a.warmup + a.steps):
    t = time.perf_counter()
    opt.zero_grad(set_to_none=False)
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    float(loss)
    dt = time.perf_counter() - t
    if i >= a.warmup:
        times.append(dt * 1e3)
times_sorted = sorted(times)
med = times_sorted[len(times) // 2]
print(json.dumps({"steps_per_s": 1e3 / med, "median_ms": med, "times_ms": times}))

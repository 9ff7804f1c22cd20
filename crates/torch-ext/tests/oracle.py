# Oracle values for tests/torch_ext.rs, printed as one JSON object.
import json
import torch

torch.set_num_threads(1)
out = {}

x = torch.sin(0.37 * torch.arange(2 * 3 * 8 * 8, dtype=torch.float32)).reshape(2, 3, 8, 8)
w = torch.cos(0.11 * torch.arange(4 * 3 * 3 * 3, dtype=torch.float32)).reshape(4, 3, 3, 3)
with torch.autocast("cpu", dtype=torch.bfloat16):
    y = torch.nn.functional.conv2d(x, w, padding=1)
out["conv_dtype"] = str(y.dtype)
out["conv_bf16"] = y.float().flatten().tolist()
out["conv_f32"] = torch.nn.functional.conv2d(x, w, padding=1).flatten().tolist()

a = torch.sin(0.05 * torch.arange(16 * 8, dtype=torch.float32)).reshape(16, 8)
m = torch.cos(0.21 * torch.arange(8 * 4, dtype=torch.float32)).reshape(8, 4).requires_grad_()
with torch.autocast("cpu", dtype=torch.bfloat16):
    p = a @ m
out["matmul_dtype"] = str(p.dtype)
(p.float() ** 2).mean().backward()
out["matmul_grad_dtype"] = str(m.grad.dtype)
out["matmul_grad"] = m.grad.flatten().tolist()

cl = x.contiguous(memory_format=torch.channels_last)
out["cl_stride"] = list(cl.stride())
print(json.dumps(out))

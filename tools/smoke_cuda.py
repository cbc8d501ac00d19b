"""A few-second CUDA-vs-CPU check of the ops changed since the last device run
(diff_conv2d with the in-place fold, the depthwise weight gradient without bias, the pad op's
polynomial mode, forward-mode AD), for a device call too short for the CUDA test suite.
Prints one line per check and exits 1 if any differs."""
import sys

import torch
import learnable_ops as lo

torch.manual_seed(0)
# cuDNN runs float32 convolutions in TF32 by default (10-bit mantissa), which the boundary
# extrapolation amplifies far past the float32 tolerance below: compare in full float32.
torch.backends.cudnn.allow_tf32 = False
bad = 0


def check(name, a, b, tol):
    global bad
    err = max((x.cpu() - y).abs().max().item() for x, y in zip(a, b))
    ok = err <= tol
    bad += not ok
    print(f"{'ok ' if ok else 'BAD'} {name}: max |cuda - cpu| = {err:.3g}", flush=True)


for dtype, tol in ((torch.float64, 1e-9), (torch.float32, 1e-4)):
    for k in (3, 5, 7):
        for groups in (1, 8):
            for keep in (True, False):
                x = torch.randn(2, 8, 19, 23, dtype=dtype)
                w = torch.randn(8, 8 // groups, k, k, dtype=dtype)
                b = torch.randn(8, dtype=dtype) if keep else None
                g_cpu = torch.randn(2, 8, 19, 23, dtype=dtype)
                res = []
                for dev in ("cpu", "cuda"):
                    xs = x.to(dev).requires_grad_()
                    ws = w.to(dev).requires_grad_()
                    y = lo.diff_conv2d(xs, ws, b if b is None else b.to(dev), groups=groups,
                                       keep_img_grad_at_invalid=keep)
                    g = g_cpu.to(dev)
                    gx, gw = torch.autograd.grad(y, (xs, ws), g)
                    res.append((y, gx, gw))
                scale = max(r.abs().max().item() for r in res[0]) or 1.0
                check(f"diff_conv2d {dtype} K={k} groups={groups} keep={keep} (scale {scale:.3g})",
                      res[1], res[0], tol * scale)

# depthwise weight gradient without the bias sum
x = torch.randn(2, 8, 30, 30, dtype=torch.float64)
w = torch.randn(8, 1, 5, 5, dtype=torch.float64)
res = []
for dev in ("cpu", "cuda"):
    xs, ws = x.to(dev).requires_grad_(), w.to(dev).requires_grad_()
    y = lo.depthwise_conv2d(xs, ws)
    res.append(torch.autograd.grad(y, (xs, ws), torch.ones_like(y)))
check("depthwise_conv2d no bias grads", res[1], res[0], 1e-9)

# pad polynomial mode, values and adjoint
x = torch.randn(2, 3, 17, 19, dtype=torch.float64)
res = []
for dev in ("cpu", "cuda"):
    xs = x.to(dev).requires_grad_()
    y = lo.pad(xs, (3, 2, 3, 1), mode="polynomial", order=3)
    res.append((y, torch.autograd.grad(y, xs, torch.ones_like(y))[0]))
check("pad polynomial", res[1], res[0], 1e-9)

# forward-mode AD on CUDA
import torch.autograd.forward_ad as fwAD
x = torch.randn(2, 8, 16, 16, dtype=torch.float64, device="cuda")
w = torch.randn(8, 1, 3, 3, dtype=torch.float64, device="cuda")
t = torch.randn_like(x)
with fwAD.dual_level():
    y = lo.depthwise_conv2d(fwAD.make_dual(x, t), w)
    jvp = fwAD.unpack_dual(y).tangent
check("depthwise jvp (linear in x)", [jvp], [lo.depthwise_conv2d(t, w).cpu()], 1e-9)
print("SMOKE", "FAILED" if bad else "PASSED", flush=True)
sys.exit(1 if bad else 0)

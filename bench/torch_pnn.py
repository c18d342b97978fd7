#!/usr/bin/python3
"""PyTorch implementation of patctl's coupled-oscillator PNNs (bench/ only).

The same physics, architectures and training algorithm as patctl
(surrogate/oscillator.c, devices/oscillators/api.c, controller/config.c and
model.c), written independently in PyTorch the way a physicist would write it
with the public PAT code: the device forward runs the hidden truth
(eta, Q_noise, input noise) without autograd; the backward pass is
torch.autograd.functional.vjp of the nominal model evaluated at exactly the
inputs and parameters that were sent to the device.

Physics (float32, rows are samples):
    q(0) = x + n, n ~ N(0, sigma^2) (device only);  p(0) = 0
    dq/dt = p
    dp/dt = -sin(w q) + e + (Q + Qn) sin(w q),   w = 1 + eta (device), 1 (nominal)
    Q = L(sym(C)): off-diagonal of (C + C^T)/2, diagonal = minus the column sums
    classic RK4, 5 steps to t_end = 0.5; y = q(t_end)
Device limits (clamp policy): inputs [-10, 10] rad, C and e [-4, 4]; the
optimiser's parameters are projected into the limits after every step.

Architectures (batch 32):
    quickstart  14x14 (2x2 pooled) -> 4 patches 7x7 -> pad 64 -> shared osc64
                -> concat 256 -> pad 266 -> osc266 -> 10 x trainable scale
    anchor      28x28 -> 16 patches 7x7 -> pad 100 -> shared osc100
                -> concat 1600 -> pad 1610 -> osc1610 -> 10 x trainable scale

Commands (run with Debian's interpreter, /usr/bin/python3):
    torch_pnn.py train --mode pat|ideal|insilico --seed 0 [--epochs 2 --train-limit 10000]
    torch_pnn.py bench --arch anchor --steps 10 [--threads T]
    torch_pnn.py serve --arch anchor [--threads T]    (driven by bench/run.py)
Thread counts: --threads sets torch.set_num_threads; the OpenBLAS thread
count must come from the environment (OPENBLAS_NUM_THREADS) before start.
"""
import argparse
import ctypes
import gzip
import math
import os
import sys
import time

import numpy as np
import torch

ARCHS = {
    #            side pool  k  n1  patches  n2
    "quickstart": (14, 2, 7, 64, 4, 266),
    "anchor": (28, 1, 7, 100, 16, 1610),
}
IN_LIM, THETA_LIM = 10.0, 4.0


def laplacian_sym(a):
    """L((A + A^T)/2): off-diagonal kept, diagonal = -(column sums of off-diagonal)."""
    s = 0.5 * (a + a.t())
    off = s - torch.diag(torch.diagonal(s))
    return off - torch.diag(off.sum(0))


def osc_rk4(x, C, e, eta=0.0, qn=None, noise=None, steps=5, t_end=0.5):
    """y[R,N] = q(t_end) of the oscillators started at q = x (+ noise), p = 0."""
    n = C.shape[0]
    M = laplacian_sym(C) - torch.eye(n, dtype=C.dtype)
    if qn is not None:
        M = M + qn
    w = 1.0 + eta
    q = x if noise is None else x + noise
    p = torch.zeros_like(q)
    h = t_end / steps

    def acc(qq):
        return torch.sin(w * qq) @ M + e  # M symmetric: (M s)^T = s^T M

    for _ in range(steps):
        a1 = acc(q)
        q2, p2 = q + 0.5 * h * p, p + 0.5 * h * a1
        a2 = acc(q2)
        q3, p3 = q + 0.5 * h * p2, p + 0.5 * h * a2
        a3 = acc(q3)
        q4, p4 = q + h * p3, p + h * a3
        a4 = acc(q4)
        q = q + (h / 6.0) * (p + 2.0 * p2 + 2.0 * p3 + p4)
        p = p + (h / 6.0) * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
    return q


class SimDevice:
    """Simulated oscillator device: hidden truth (eta, Qn, sigma), limits."""

    def __init__(self, n, seed, eta=0.1, j_noise=0.2, sigma=0.02):
        self.n, self.eta, self.sigma = n, eta, sigma
        g = torch.Generator().manual_seed(10007 * seed + n)
        self.qn = laplacian_sym(j_noise * torch.randn(n, n, generator=g)) if j_noise > 0 else None
        self.noise_gen = torch.Generator().manual_seed(20011 * seed + n)
        self.queries = 0

    def boundary(self, x, C, e):
        return (x.clamp(-IN_LIM, IN_LIM), C.clamp(-THETA_LIM, THETA_LIM),
                e.clamp(-THETA_LIM, THETA_LIM))

    def draw_noise(self, shape):
        self.queries += 1
        return self.sigma * torch.randn(shape, generator=self.noise_gen)

    def run(self, x, C, e):
        """Measured y for inputs/parameters already through the boundary."""
        with torch.no_grad():
            return osc_rk4(x, C, e, self.eta, self.qn, self.draw_noise(x.shape))

    def run_differentiable(self, x, C, e):
        """The simulation with autograd (ideal mode: its exact gradient)."""
        return osc_rk4(x, C, e, self.eta, self.qn, self.draw_noise(x.shape))


def nominal(x, C, e):
    return osc_rk4(x, C, e)


class PATLayer(torch.autograd.Function):
    """Forward on the device; backward = VJP of the nominal model at what was sent."""

    @staticmethod
    def forward(ctx, x, C, e, dev):
        xs, Cs, es = dev.boundary(x, C, e)
        ctx.save_for_backward(xs, Cs, es)
        return dev.run(xs, Cs, es)

    @staticmethod
    def backward(ctx, gy):
        xs, Cs, es = ctx.saved_tensors
        _, (gx, gC, ge) = torch.autograd.functional.vjp(nominal, (xs, Cs, es), gy)
        return gx, gC, ge, None


def physical(x, C, e, dev, how):
    """how: 'pat' (training), 'insilico' (surrogate both ways), 'ideal'
    (device with autograd), 'device' (evaluation)."""
    if how == "pat":
        return PATLayer.apply(x, C, e, dev)
    if how == "insilico":
        xs = x + (x.clamp(-IN_LIM, IN_LIM) - x).detach()
        return nominal(xs, C, e)
    if how == "ideal":
        xs = x + (x.clamp(-IN_LIM, IN_LIM) - x).detach()
        return dev.run_differentiable(xs, C, e)
    xs, Cs, es = dev.boundary(x, C, e)
    return dev.run(xs, Cs, es)


class PNN(torch.nn.Module):
    def __init__(self, arch, seed, dev_seed=None):
        super().__init__()
        self.side, self.pool, self.k, self.n1, self.P, self.n2 = ARCHS[arch]
        g = torch.Generator().manual_seed(seed)

        def uni(shape, n):
            b = 1.0 / math.sqrt(n)
            return torch.nn.Parameter((2.0 * torch.rand(shape, generator=g) - 1.0) * b)

        self.C1, self.e1 = uni((self.n1, self.n1), self.n1), uni((self.n1,), self.n1)
        self.C2, self.e2 = uni((self.n2, self.n2), self.n2), uni((self.n2,), self.n2)
        self.scale = torch.nn.Parameter(torch.tensor(1.0))
        ds = seed if dev_seed is None else dev_seed
        self.dev1 = SimDevice(self.n1, 2 * ds + 1)
        self.dev2 = SimDevice(self.n2, 2 * ds + 2)

    def forward(self, img, how):
        B, s, k = img.shape[0], self.side, self.k
        # [B, s*s] -> [B*P, k*k]: patches in row-major position order, pixels row-major
        x = img.view(B, s // k, k, s // k, k).permute(0, 1, 3, 2, 4).reshape(B * self.P, k * k)
        x = torch.nn.functional.pad(x, (0, self.n1 - k * k))
        y = physical(x, self.C1, self.e1, self.dev1, how)                 # [B*P, n1]
        x = torch.nn.functional.pad(y.reshape(B, self.P * self.n1), (0, self.n2 - self.P * self.n1))
        y = physical(x, self.C2, self.e2, self.dev2, how)                 # [B, n2]
        return self.scale * y[:, -10:]

    def project(self):
        with torch.no_grad():
            for p in (self.C1, self.e1, self.C2, self.e2):
                p.clamp_(-THETA_LIM, THETA_LIM)


def step_flops(arch, batch=32, steps=5):
    """Matrix FLOPs of one PAT step: device + nominal forward + VJP (2 GEMMs/stage)."""
    side, pool, k, n1, P, n2 = ARCHS[arch]
    f = 0.0
    for rows, n in ((batch * P, n1), (batch, n2)):
        f += 4 * (2.0 * rows * n * n * 4 * steps)
    return f


# ---------------------------------------------------------------- data
def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(dirname, prefix, pool, limit):
    x = read_idx(os.path.join(dirname, prefix + "-images-idx3-ubyte.gz"))
    y = read_idx(os.path.join(dirname, prefix + "-labels-idx1-ubyte.gz"))
    if limit:
        x, y = x[:limit], y[:limit]
    x = x.astype(np.float32) / 255.0
    if pool > 1:
        n, H, W = x.shape
        x = x.reshape(n, H // pool, pool, W // pool, pool).mean(axis=(2, 4))
    return torch.from_numpy(x.reshape(len(x), -1).copy()), torch.from_numpy(y.astype(np.int64))


# ---------------------------------------------------------------- training
def make_step(model, opt, how):
    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x, how), y)
        loss.backward()
        opt.step()
        model.project()
        return loss.item()
    return step


def evaluate(model, x, y, batch=250):
    hits = 0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            hits += (model(x[s:s + batch], "device").argmax(1) == y[s:s + batch]).sum().item()
    return hits / len(x)


def train(args):
    arch = args.arch
    pool = ARCHS[arch][1]
    xtr, ytr = load(args.data, "train", pool, args.train_limit)
    xte, yte = load(args.data, "t10k", pool, args.test_limit)
    results = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        model = PNN(arch, seed)
        opt = torch.optim.Adam(model.parameters(), lr=args.lr)
        how = args.mode
        step = make_step(model, opt, how)
        g = torch.Generator().manual_seed(1000 + seed)
        t0 = time.time()
        for ep in range(args.epochs):
            perm = torch.randperm(len(xtr), generator=g)
            tot, nb = 0.0, 0
            te = time.time()
            for s in range(0, len(xtr), args.batch):
                idx = perm[s:s + args.batch]
                tot += step(xtr[idx], ytr[idx])
                nb += 1
            print(f"  seed {seed} epoch {ep + 1}: loss {tot / nb:.4f} ({time.time() - te:.1f} s)",
                  flush=True)
        train_s = time.time() - t0
        acc = evaluate(model, xte, yte)
        results.append(acc)
        print(f"torch {arch} mode={how} seed={seed}: test accuracy {100 * acc:.2f} % "
              f"(train {train_s:.1f} s)", flush=True)
    if len(results) > 1:
        print(f"torch {arch} mode={args.mode}: mean over seeds {args.seeds}: "
              f"{100 * sum(results) / len(results):.2f} %")


# ---------------------------------------------------------------- benchmark
def openblas_threads():
    """OpenBLAS threads of the BLAS torch loaded (0 if unknown)."""
    try:
        with open("/proc/self/maps") as f:
            libs = {ln.split()[-1] for ln in f if "blas" in ln and ln.split()[-1].startswith("/")}
        for lib in sorted(libs):
            h = ctypes.CDLL(lib)
            if hasattr(h, "openblas_get_num_threads"):
                return h.openblas_get_num_threads()
    except OSError:
        pass
    return 0


class Bench:
    def __init__(self, arch, data):
        pool = ARCHS[arch][1]
        side = ARCHS[arch][0]
        try:
            self.x, self.y = load(data, "train", pool, 10000)
        except OSError as e:
            print(f"torch_pnn: {e}; using random images", file=sys.stderr)
            g = torch.Generator().manual_seed(1)
            self.x = torch.rand(10000, side * side, generator=g)
            self.y = torch.randint(0, 10, (10000,), generator=g)
        self.model = PNN(arch, 0)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.step = make_step(self.model, self.opt, "pat")
        self.next = 0
        self.arch = arch

    def run(self, k, batch=32):
        times, loss = [], 0.0
        for _ in range(k):
            s = self.next % (len(self.x) - batch)
            self.next += batch
            xb, yb = self.x[s:s + batch], self.y[s:s + batch]
            t0 = time.perf_counter()
            loss = self.step(xb, yb)
            times.append(1e3 * (time.perf_counter() - t0))
        return times, loss

    def info(self):
        return (f"info arch={self.arch} torch={torch.__version__} torch_threads={torch.get_num_threads()} "
                f"interop_threads={torch.get_num_interop_threads()} blas_threads={openblas_threads()} "
                f"flop_matrix={step_flops(self.arch):.6g}")


def serve(args):
    b = Bench(args.arch, args.data)
    print(b.info(), flush=True)
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        if w[0] == "steps":
            t, loss = b.run(int(w[1]))
            print("ms " + " ".join(f"{v:.3f}" for v in t) + f" loss={loss:.4f}", flush=True)
        elif w[0] == "info":
            print(b.info(), flush=True)
        elif w[0] == "quit":
            break
        else:
            print("error unknown command", flush=True)


def bench(args):
    b = Bench(args.arch, args.data)
    print(b.info())
    b.run(2)
    t, loss = b.run(args.steps)
    t.sort()
    med = t[len(t) // 2]
    print(f"torch {args.arch} pat: median step {med:.2f} ms over {args.steps} steps, "
          f"{step_flops(args.arch) / med * 1e-6:.1f} GFLOP/s (matrix), loss {loss:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["train", "bench", "serve"])
    ap.add_argument("--arch", default="quickstart", choices=sorted(ARCHS))
    ap.add_argument("--mode", default="pat", choices=["pat", "ideal", "insilico"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--train-limit", type=int, default=10000)
    ap.add_argument("--test-limit", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0 = default)")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    {"train": train, "bench": bench, "serve": serve}[args.command](args)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Side-by-side benchmark: patctl's training step against PyTorch's.

Starts one patctl worker (build/bench/bench_step --serve) and one PyTorch
worker (bench/torch_pnn.py serve) per thread configuration, all on the same
architecture, and then asks them in turn for a few steps each, round after
round (the order rotates every round), so that every implementation sees
the same machine load.  Workers that are not asked wait on a pipe (no CPU).
Reports per-step medians, ratios, GFLOP/s and the sgemm peak measured by the
patctl worker in the same run.  Never run by ctest.

    bench/run.sh                         # both architectures, default settings
    bench/run.sh --arch anchor --rounds 8 --steps 3
    bench/run.sh --torch default,ob1-t2,ob2-t2,ob1-t1,ob2-t1   # scan torch threads
    bench/run.sh --patctl old=/tmp/old/bench_step --patctl new=build/bench/bench_step
"""
import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

# name -> (OpenBLAS threads or None for the default, torch threads or 0 for the default)
TORCH_CONFIGS = {
    "default": (None, 0),
    "ob1-t1": (1, 1),
    "ob1-t2": (1, 2),
    "ob2-t1": (2, 1),
    "ob2-t2": (2, 2),
}


class Worker:
    def __init__(self, name, kind, cmd, env):
        self.name, self.kind = name, kind
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  env=env, text=True, bufsize=1)
        self.info = self.read()
        self.times = []

    def read(self):
        line = self.p.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.name} died (see its stderr above)")
        return line.strip()

    def ask(self, cmd):
        self.p.stdin.write(cmd + "\n")
        self.p.stdin.flush()
        return self.read()

    def steps(self, k, keep=True):
        words = self.ask(f"steps {k}").split()
        if words[0] != "ms":
            raise RuntimeError(f"worker {self.name}: {' '.join(words)}")
        t = [float(w) for w in words[1:] if not w.startswith("loss=")]
        if keep:
            self.times += t
        return t

    def close(self):
        try:
            self.p.stdin.write("quit\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            pass
        self.p.wait(timeout=30)


def parse_info(line):
    return dict(w.split("=", 1) for w in line.split()[1:] if "=" in w)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def clean_env(extra=None):
    env = dict(os.environ)
    for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "GOTO_NUM_THREADS"):
        env.pop(k, None)
    env.update(extra or {})
    return env


def quantiles(t):
    t = sorted(t)
    n = len(t)
    return t[n // 4], statistics.median(t), t[(3 * n) // 4]


def run_arch(args, arch, out):
    workers = []
    try:
        for name, path in args.patctl:
            env = clean_env({"PATCTL_THREADS": str(args.patctl_threads)} if args.patctl_threads else None)
            workers.append(Worker(name, "patctl", [path, "--arch", arch, "--serve", "--data", args.data], env))
        for name in args.torch:
            ob, tt = TORCH_CONFIGS[name]
            env = clean_env({"OPENBLAS_NUM_THREADS": str(ob)} if ob else None)
            cmd = [args.python, os.path.join(HERE, "torch_pnn.py"), "serve", "--arch", arch,
                   "--data", args.data]
            if tt:
                cmd += ["--threads", str(tt)]
            workers.append(Worker("torch-" + name, "torch", cmd, env))
        ref = workers[0]
        info = parse_info(ref.info)
        flop = {k: float(info[k]) for k in ("flop_dev", "flop_sur", "flop_vjp", "flop_opt")}
        total = sum(flop.values())
        load0 = loadavg()
        peaks = [float(ref.ask("peak").split()[1])]
        for w in workers:               # warm-up: allocations, tapes, page faults
            w.steps(args.warmup, keep=False)
            time.sleep(args.pause)
        for r in range(args.rounds):
            order = workers[r % len(workers):] + workers[:r % len(workers)]
            for w in order:
                w.steps(args.steps)
                time.sleep(args.pause)  # let BLAS threads go idle
        peaks.append(float(ref.ask("peak").split()[1]))
        blas = {}                       # patctl: CPU time inside OpenBLAS per step
        for w in workers:
            if w.kind == "patctl":
                words = w.ask(f"blas {max(args.steps, 3)}").split()
                if words[0] == "blas":  # older bench_step binaries do not know it
                    blas[w.name] = (float(words[1]), float(words[2]), float(words[3]))
        load1 = loadavg()
    finally:
        for w in workers:
            w.close()

    peak = max(peaks)
    med = {w.name: quantiles(w.times) for w in workers}
    torch_names = [w.name for w in workers if w.kind == "torch"]
    best = min(torch_names, key=lambda n: med[n][1]) if torch_names else None
    p = lambda s="": print(s, file=out, flush=True)
    p(f"## {arch}")
    p()
    p(f"One PAT training step, batch 32: device forward {flop['flop_dev'] / 1e9:.3f} + surrogate forward "
      f"{flop['flop_sur'] / 1e9:.3f} + VJP {flop['flop_vjp'] / 1e9:.3f} + Adam {flop['flop_opt'] / 1e9:.3f} "
      f"= **{total / 1e9:.3f} GFLOP** (GEMMs 2mnk; Adam 12/parameter; sin/cos and other elementwise "
      f"work, {float(info['flop_ew']) / 1e6:.0f} Mflop + {float(info['sincos']) / 1e6:.1f} M sin/cos, "
      f"not counted).")
    p(f"sgemm 1024^3 peak in this run (patctl's threads): {peaks[0]:.0f} / {peaks[1]:.0f} GFLOP/s "
      f"(start / end), best {peak:.0f}.  Load average {load0} at start, {load1} at end.")
    p(f"{args.rounds} rounds x {args.steps} steps per implementation, alternating; "
      f"{len(workers[0].times)} steps each.")
    p()
    p("| implementation | threads | median ms/step | IQR ms | GFLOP/s | % of peak | patctl / this |")
    p("|---|---|---:|---:|---:|---:|---:|")
    first = workers[0].name
    for w in workers:
        q1, m, q3 = med[w.name]
        i = parse_info(w.info)
        if w.kind == "patctl":
            thr = f"team {i.get('team_threads', '?')}, OpenBLAS {i.get('blas_threads', '?')}"
        else:
            thr = f"torch {i.get('torch_threads')}, OpenBLAS {i.get('blas_threads')}"
        mark = " (best torch)" if w.name == best else ""
        ratio = med[first][1] / m
        p(f"| {w.name}{mark} | {thr} | {m:.1f} | {q1:.1f}-{q3:.1f} | {total / m * 1e-6:.1f} | "
          f"{100 * total / m * 1e-6 / peak:.0f} | {ratio:.2f} |")
    p()
    if best:
        dflt = "torch-default" if "torch-default" in med else None
        s = f"**{first} / best PyTorch ({best}) = {med[first][1] / med[best][1]:.2f}**"
        if dflt:
            s += f"; {first} / PyTorch default = {med[first][1] / med[dflt][1]:.2f}"
        p(s + ".")
        p()
    for name, (cpu, calls, wall) in blas.items():
        i = parse_info(next(w.info for w in workers if w.name == name))
        nt = int(i.get("team_threads", "1"))
        s = (f"Inside OpenBLAS ({name}): {cpu:.1f} ms of CPU per step over {calls:.0f} calls, all "
             f"threads (measured after the rounds, {wall:.1f} ms/step then), so the OpenBLAS calls alone "
             f"need at least {cpu / nt:.1f} ms of a step's wall time on {nt} threads")
        if best:
            s += f"; one third of the best PyTorch step is {med[best][1] / 3:.1f} ms"
        p(s + ".")
    if blas:
        p()
    return med


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", nargs="+", default=["quickstart", "anchor"])
    ap.add_argument("--rounds", type=int, default=0, help="rounds (default: 15 quickstart, 8 anchor)")
    ap.add_argument("--steps", type=int, default=0, help="steps per turn (default: 10 quickstart, 3 anchor)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--pause", type=float, default=0.2, help="seconds between turns")
    ap.add_argument("--torch", default="default,ob1-t2,ob2-t2",
                    help="comma-separated torch thread configurations: " + ",".join(TORCH_CONFIGS))
    ap.add_argument("--patctl", action="append", default=[],
                    help="NAME=PATH of a bench_step binary (repeatable; default patctl=build/bench/bench_step)")
    ap.add_argument("--patctl-threads", type=int, default=0, help="PATCTL_THREADS for patctl workers")
    ap.add_argument("--python", default="/usr/bin/python3")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    args.torch = [t for t in args.torch.split(",") if t]
    for t in args.torch:
        if t not in TORCH_CONFIGS:
            ap.error(f"unknown torch configuration {t}")
    if not args.patctl:
        args.patctl = ["patctl=" + os.path.join(ROOT, "build", "bench", "bench_step")]
    args.patctl = [tuple(s.split("=", 1)) for s in args.patctl]
    rounds, steps = args.rounds, args.steps
    print(f"# patctl vs PyTorch, {time.strftime('%Y-%m-%d %H:%M')}, {os.uname().nodename}, "
          f"{os.cpu_count()} CPUs\n", flush=True)
    for arch in args.arch:
        args.rounds = rounds or (15 if arch == "quickstart" else 8)
        args.steps = steps or (10 if arch == "quickstart" else 3)
        run_arch(args, arch, sys.stdout)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Read back what `patctl export` wrote, with numpy only, and compare it
with the run store read through Python's sqlite3 (test_runs runs this).
usage: check_export.py RUN_DIR NPY_DIR CSV_DIR"""
import csv
import sqlite3
import sys

import numpy as np

run, npy, csvdir = sys.argv[1:4]
db = sqlite3.connect(f"{run}/run.sqlite")
fails = []


def check(cond, what):
    if not cond:
        fails.append(what)


# tables as structured arrays
step = np.load(f"{npy}/step.npy")
rows = db.execute("SELECT step, loss, device_queries, status FROM step ORDER BY attempt").fetchall()
check(len(step) == len(rows), "step rows")
check(np.array_equal(step["step"], [r[0] for r in rows]), "step numbers")
# a skipped step's loss is NULL in the store, NaN in the export
check(np.array_equal(step["loss"], [np.nan if r[1] is None else r[1] for r in rows], equal_nan=True),
      "step losses")
check([s.decode() for s in step["status"]] == [r[3] for r in rows], "step status")
check(np.array_equal(step["device_queries"], [r[2] for r in rows]), "step device queries")
config = db.execute("SELECT config FROM run").fetchone()[0]
check(np.load(f"{npy}/run.npy")["config"][0].decode() == config, "run config text")
epoch = np.load(f"{npy}/epoch.npy")
check(len(epoch) == db.execute("SELECT COUNT(*) FROM epoch").fetchone()[0], "epoch rows")

# parameters of the last checkpoint, whole and per block
blob, n = db.execute("SELECT params, n_params FROM checkpoint ORDER BY id DESC LIMIT 1").fetchone()
params = np.frombuffer(blob, "<f4")
p = np.load(f"{npy}/params.npy")
check(p.shape == (n,) and np.array_equal(p, params), "params.npy")
for name, off, r, c in db.execute("SELECT name, offset, rows, cols FROM param_view"):
    v = np.load(f"{npy}/param_{name}.npy")
    check(v.shape == (r, c) and np.array_equal(v, params[off:off + r * c].reshape(r, c)), f"param_{name}")

# the journal of each device: inputs, outputs, settings
for idx, dev, n_in, n_out, n_theta in db.execute("SELECT idx, name, n_in, n_out, n_theta FROM device"):
    q = db.execute("SELECT id, batch, x, y FROM query WHERE device = ? AND batch > 0 AND x IS NOT NULL"
                   " ORDER BY id", (idx,)).fetchall()
    x = np.concatenate([np.frombuffer(r[2], "<f4").reshape(r[1], n_in) for r in q])
    # a failed query has no y: NaN rows in the export
    y = np.concatenate([np.frombuffer(r[3], "<f4").reshape(r[1], n_out) if r[3] is not None
                        else np.full((r[1], n_out), np.nan, "<f4") for r in q])
    ids = np.concatenate([np.full(r[1], r[0]) for r in q])
    check(np.array_equal(np.load(f"{npy}/journal_{dev}_x.npy"), x), f"journal_{dev}_x")
    check(np.array_equal(np.load(f"{npy}/journal_{dev}_y.npy"), y, equal_nan=True), f"journal_{dev}_y")
    check(np.array_equal(np.load(f"{npy}/journal_{dev}_query.npy"), ids), f"journal_{dev}_query")
    s = db.execute("SELECT id, theta FROM setting WHERE device = ? ORDER BY id", (idx,)).fetchall()
    th = np.stack([np.frombuffer(r[1], "<f4") for r in s])
    check(np.array_equal(np.load(f"{npy}/journal_{dev}_settings.npy"), th), f"journal_{dev}_settings")
    check(th.shape == (len(s), n_theta), f"settings shape of {dev}")
    # CSV: the same numbers (float32 printed with 9 digits reads back exactly)
    with open(f"{csvdir}/journal_{dev}_x.csv") as f:
        rd = csv.reader(f)
        next(rd)
        cx = np.array([[float(v) for v in row] for row in rd])
    check(np.array_equal(cx[:, 0], ids) and np.array_equal(cx[:, 1:].astype(np.float32), x), f"journal_{dev}_x.csv")

conf = np.load(f"{npy}/confusion.npy")
n_eval = db.execute("SELECT n FROM evaluation ORDER BY id DESC LIMIT 1").fetchone()[0]
check(conf.shape == (10, 10) and conf.sum() == n_eval, "confusion")
with open(f"{csvdir}/step.csv") as f:
    rd = csv.DictReader(f)
    losses = [float(r["loss"]) if r["loss"] else None for r in rd]  # skipped steps: empty
check(losses == [r[1] for r in rows], "step.csv losses")

if fails:
    print("export read-back FAILED:", ", ".join(fails))
    sys.exit(1)
print(f"  numpy {np.__version__} read back the export: {len(step)} steps, parameters, journal, CSV: all equal")

#!/usr/bin/python3
"""Compares an output .npy with a reference .npy and prints the figures.

  compare.py GOT.npy REF.npy [--min-cos 0.99999] [--rel-max-err 1e-4]

Passes when the shapes agree, nothing is NaN/Inf where the reference is finite, the cosine
similarity of the flattened arrays is >= --min-cos, and the largest absolute error is
<= --rel-max-err * max|REF| (an error bound relative to the output's own scale, so it means the
same for logits of size 10 and for embeddings of size 0.01). Exit 0 on pass, 1 on fail.
"""
import argparse
import sys

import numpy as np


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("got")
    ap.add_argument("ref")
    ap.add_argument("--min-cos", type=float, default=0.99999)
    ap.add_argument("--rel-max-err", type=float, default=1e-4)
    a = ap.parse_args()
    got, ref = np.load(a.got), np.load(a.ref)
    if got.shape != ref.shape:
        print(f"FAIL: shape {got.shape} != reference shape {ref.shape}")
        return 1
    g = got.astype(np.float64).ravel()
    r = ref.astype(np.float64).ravel()
    if not np.array_equal(np.isfinite(g), np.isfinite(r)):
        print(f"FAIL: {int(np.sum(~np.isfinite(g)))} non-finite values (reference has {int(np.sum(~np.isfinite(r)))})")
        return 1
    fin = np.isfinite(r)
    g, r = g[fin], r[fin]
    scale = float(np.max(np.abs(r))) if r.size else 0.0
    max_err = float(np.max(np.abs(g - r))) if r.size else 0.0
    denom = np.linalg.norm(g) * np.linalg.norm(r)
    cos = float(np.dot(g, r) / denom) if denom > 0 else (1.0 if max_err == 0 else 0.0)
    bound = a.rel_max_err * scale
    ok = cos >= a.min_cos and max_err <= bound
    print(f"{'PASS' if ok else 'FAIL'}: shape {list(got.shape)}  cosine {cos:.9f} (min {a.min_cos})  "
          f"max abs err {max_err:.3e} (limit {bound:.3e} = {a.rel_max_err:g} x max|ref| {scale:.4g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

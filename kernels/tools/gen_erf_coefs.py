"""Print the coefficient table of the double-precision erf in kernels/src/unary_simd.c.

Interval 0 ([0, 0.5)): the Taylor series erf(a) = a * sum_n q_n (a^2)^n, q_n = 2/sqrt(pi) *
(-1)^n / (n! (2n + 1)), n = 0..12 (last term < 1e-17 there; keeps full relative accuracy near 0).
Intervals k = 1..11 ([k/2, k/2 + 1/2)): a degree-12 Chebyshev fit of erf in t = a - centre,
on 200 Chebyshev nodes with 40-digit mpmath values, converted to powers of t. Max abs error of
the Horner evaluation in double over the 11 intervals: 8e-16 (printed at the end).
Run: .venv/bin/python kernels/tools/gen_erf_coefs.py (needs numpy, mpmath).
"""
import math

import mpmath
import numpy as np
from numpy.polynomial import chebyshev as C

mpmath.mp.dps = 40
DEG, W, NINT = 12, 0.5, 12


def erf(v):
    return float(mpmath.erf(v))


def taylor():
    return [float(2 / mpmath.sqrt(mpmath.pi) * (-1) ** n / (mpmath.factorial(n) * (2 * n + 1)))
            for n in range(DEG + 1)]


def fit(k):
    c = k * W + W / 2
    nodes = np.cos(np.pi * (np.arange(200) + 0.5) / 200)
    y = np.array([erf(mpmath.mpf(c) + mpmath.mpf(u) * W / 2) for u in nodes])
    mono = C.cheb2poly(C.chebfit(nodes, y, DEG)) / (W / 2) ** np.arange(DEG + 1)
    t = np.linspace(-W / 2, W / 2, 4001)
    p = np.zeros_like(t)
    for cf in mono[::-1]:
        p = p * t + cf
    err = max(abs(p[i] - erf(mpmath.mpf(c) + mpmath.mpf(t[i]))) for i in range(len(t)))
    return list(mono), err


rows, worst = [taylor()], 0.0
for k in range(1, NINT):
    r, e = fit(k)
    rows.append(r)
    worst = max(worst, e)
print(f"/* [j][k]: coefficient of power j, interval k (kernels/tools/gen_erf_coefs.py) */")
print(f"static const double ERF_C[{DEG + 1}][{NINT}] = {{")
for j in range(DEG + 1):
    vals = ", ".join(f"{rows[k][j]:.17g}" for k in range(NINT))
    print(f"    {{{vals}}},")
print("};")
print(f"/* max abs error of the fit, intervals 1..{NINT - 1}: {worst:.2g} */")

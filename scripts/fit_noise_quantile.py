"""Fits the polynomial of `schedules.truncated_normal_quantile` and prints its coefficients.

The gradient noise of SPAIR_SPEC §1.11 is N(0, 1) truncated to [−2, 2], drawn as Φ⁻¹(u) for
u uniform on [Φ(−2), Φ(2)]. On that range, with x = 2u − 1 and w = −log(1 − x²) ∈ [0, W],
Φ⁻¹(u) = x·Q(w) with Q smooth (the substitution removes the singularities of Φ⁻¹ at 0 and
1), so a degree-7 polynomial in w − W/2 reaches float32 accuracy. The coefficients are a
least-squares fit in float64 to scipy's ndtri on 200,000 points.

  python scripts/fit_noise_quantile.py
"""

import numpy as np
from scipy.special import ndtr, ndtri

TRUNCATION = 2.0
DEGREE = 7


def main():
    hi = ndtr(TRUNCATION)
    u = np.linspace(0.5, hi, 200_001)[1:]           # Q is even in x: fit u > 1/2
    x = 2.0 * u - 1.0
    w = -np.log1p(-x * x)
    w_max = -np.log1p(-(2.0 * hi - 1.0) ** 2)
    fit = np.polynomial.Polynomial.fit(w - w_max / 2, ndtri(u) / x, DEGREE).convert()
    print(f"W_MAX = {float(w_max)!r}")
    print("COEFFICIENTS = (  # lowest degree first")
    for c in fit.coef:
        print(f"    {float(c)!r},")
    print(")")


if __name__ == "__main__":
    main()

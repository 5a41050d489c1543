"""JAX reference: NTK block traces of the wave1d PINN with ``jax.jacrev`` + ``vmap``.

Why this exists: the JAX counterpart of ``torch_ntk.py`` (DESIGN.md reference:
23.7 ms jacrev vs 24.6 ms torch.func on an H100 at width 500); ``ntksweep
bench`` prints it next to its own NTK time, measured in the same invocation.
``check_references.py`` also uses ``ntk_blocks`` from here to show that JAX and
torch.func give the same traces for the same weights.

Workload: identical to ``torch_ntk.py``: network ``[2, W, W, W, 1]`` tanh,
Xavier-normal, zero biases, float64 by default (``jax_enable_x64``); three
terms, ``P = --points`` uniform points each: ``res`` = ``u_tt - 4 u_xx`` at
``(t, x)``, ``ic`` = ``u(0, x)``, ``iv`` = ``u_t(0, x)``; per term
``J = vmap(jacrev(r, argnums=0))`` ``[P, n_params]`` (leaves flattened and
concatenated in order ``W_0, b_0, W_1, b_1, ...``), ``K = J J^T``,
``trace(K)``, ``||K||_F``. The whole computation (3 terms) is one ``jax.jit``
function. Weights from ``numpy.random.default_rng(--seed)``, points from
``numpy.random.default_rng(--seed + 1)`` (not bit-identical to the torch
script's draws; timings do not depend on them).

Timed: ``--steps`` calls after ``--warmup`` untimed calls, ``block_until_ready``
on every call's outputs (the 6 scalars); compilation (AOT ``lower().compile()``)
excluded and reported as ``compile_s``.

Output, one JSON line on stdout:
``{"impl": "jax_jacrev", "workload": "ntk_traces", "device", "device_model",
"dtype", "width", "depth", "points", "terms", "n_params", "steps", "warmup",
"compile_s", "ms", "trace": {"res", "ic", "iv"}, "frobenius": {"res", "ic", "iv"},
"jax"}``; ``ms`` is milliseconds per call (all three terms).
"""

from __future__ import annotations

import time

import numpy as np

if __package__:
    from . import _jax_common as jc
else:  # run as a script: python analysis/reference/jax_ntk.py
    import _jax_common as jc

import jax
import jax.numpy as jnp

TERMS = ("res", "ic", "iv")


def r_res(params, z):
    """``u_tt - c^2 u_xx`` at one point ``z = (t, x)``."""
    h = jax.hessian(jc.mlp, argnums=1)(params, z)
    return h[0, 0] - jc.WAVE_C**2 * h[1, 1]


def r_ic(params, z):
    """``u(0, x)`` (the target is a constant and drops out of the Jacobian)."""
    return jc.mlp(params, z)


def r_iv(params, z):
    """``u_t(0, x)``."""
    return jax.grad(jc.mlp, argnums=1)(params, z)[0]


RESIDUALS = {"res": r_res, "ic": r_ic, "iv": r_iv}


def term_jacobian(r, params, pts):
    """``J`` ``[P, n_params]`` of one term: exact per-point parameter gradients."""
    jac = jax.vmap(jax.jacrev(r, argnums=0), in_axes=(None, 0))(params, pts)
    return jnp.concatenate([leaf.reshape(pts.shape[0], -1) for leaf in jax.tree_util.tree_leaves(jac)], axis=1)


@jax.jit
def ntk_blocks(params, pts):
    """``{term: (trace K_ii, ||K_ii||_F)}`` for ``pts = {term: [P, 2]}``."""
    out = {}
    for name, r in RESIDUALS.items():
        J = term_jacobian(r, params, pts[name])
        K = J @ J.T
        out[name] = (jnp.trace(K), jnp.linalg.norm(K))
    return out


def ntk_points(points: int, seed: int) -> dict[str, np.ndarray]:
    """Uniform NTK points per term, float64 numpy ``[P, 2]`` (``t = 0`` for ``ic``/``iv``)."""
    rng = np.random.default_rng(seed + 1)
    zeros = np.zeros(points)
    return {
        "res": rng.random((points, 2)),
        "ic": np.stack([zeros, rng.random(points)], axis=1),
        "iv": np.stack([zeros, rng.random(points)], axis=1),
    }


def main(argv: list[str] | None = None) -> dict:
    p = jc.base_parser(__doc__.splitlines()[0], steps=20, warmup=3, dtype="float64", width=500)
    p.add_argument("--points", type=int, default=300, help="points per term (default %(default)s)")
    args = p.parse_args(argv)
    dev, dtype = jc.init_jax(args.device, args.dtype)

    with jax.default_device(dev):
        params = jc.to_device(jc.xavier_params(jc.wave_sizes(args.width), args.seed), dev, dtype)
        pts = {k: jax.device_put(jnp.asarray(v, dtype), dev) for k, v in ntk_points(args.points, args.seed).items()}

        t0 = time.perf_counter()
        fn = ntk_blocks.lower(params, pts).compile()
        compile_s = time.perf_counter() - t0

        out = None
        for _ in range(args.warmup):
            out = fn(params, pts)
            jc.block(out)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            out = fn(params, pts)
            jc.block(out)
        sec = (time.perf_counter() - t0) / max(args.steps, 1)

    n_params = sum(W.size + b.size for W, b in params)
    record = {
        "impl": "jax_jacrev",
        "workload": "ntk_traces",
        "device": jc.device_kind(dev),
        "device_model": dev.device_kind,
        "dtype": args.dtype,
        "width": args.width,
        "depth": 3,
        "points": args.points,
        "terms": list(TERMS),
        "n_params": int(n_params),
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": compile_s,
        "ms": sec * 1e3,
        "trace": {k: float(out[k][0]) for k in TERMS} if out else None,
        "frobenius": {k: float(out[k][1]) for k in TERMS} if out else None,
        "jax": jax.__version__,
    }
    jc.emit(record)
    return record


if __name__ == "__main__":
    main()

"""JAX (jit) reference: one Adam training step of the wave1d PINN.

Why this exists: JAX's whole-step compilation is the fastest common way to
train a small PINN (DESIGN.md reference: 0.70 ms vs 10.9 ms PyTorch eager on an
H100 at width 500). ``ntksweep bench`` prints this next to its own step time,
measured in the same invocation, so the gap to a fused step stays visible.

Workload: identical to ``torch_step.py`` (wave1d, c = 2, network
``[2, W, W, W, 1]`` tanh, Xavier-normal, zero biases; per step fresh uniform
points, ``B = --batch`` per term: residual ``(t, x)`` (B), initial value ``x``
(B), initial velocity ``x`` (B, separate draw), boundary ``t`` (B, used at
``x = 0`` and ``x = 1``); loss = mean (u_tt - 4 u_xx)^2 + mean (u(0,x) - u0(x))^2
+ mean u_t(0,x)^2 + mean u(t,0)^2 + mean u(t,1)^2; Adam lr 1e-3, hand-written).
Input derivatives: ``jax.hessian`` / ``jax.grad`` of the one-point network
w.r.t. its input, ``vmap`` over points. Sampling (``jax.random``, key carried
in the state), loss, gradient and Adam update are ONE ``jax.jit`` function.
Weights come from ``numpy.random.default_rng(--seed)`` (not bit-identical to
the torch script's; the timing does not depend on it).

Timed: ``--steps`` calls of the compiled step after ``--warmup`` untimed
calls, ``block_until_ready`` on the result at the end. Compilation (AOT
``lower().compile()``) is excluded and reported as ``compile_s``.

Output, one JSON line on stdout:
``{"impl": "jax_jit", "workload": "wave_step", "device", "device_model",
"dtype", "width", "depth", "batch", "steps", "warmup", "compile_s",
"ms_per_step", "final_loss", "jax"}``.
"""

from __future__ import annotations

import time

if __package__:
    from . import _jax_common as jc
else:  # run as a script: python analysis/reference/jax_step.py
    import _jax_common as jc

import jax
import jax.numpy as jnp


def wave_loss_at(params, pts):
    """Scalar wave1d PINN loss at ``pts``: ``res`` ``[B, 2]`` (t, x); ``ic``, ``iv`` ``[B]`` (x); ``bc`` ``[B]`` (t)."""
    u_batch = jax.vmap(jc.mlp, in_axes=(None, 0))
    hess_batch = jax.vmap(jax.hessian(jc.mlp, argnums=1), in_axes=(None, 0))   # [B, 2, 2]
    grad_batch = jax.vmap(jax.grad(jc.mlp, argnums=1), in_axes=(None, 0))      # [B, 2]

    h = hess_batch(params, pts["res"])
    res = h[:, 0, 0] - jc.WAVE_C**2 * h[:, 1, 1]

    x_ic = pts["ic"]
    ic = u_batch(params, jnp.stack([jnp.zeros_like(x_ic), x_ic], axis=1)) - jc.wave_u0(x_ic)

    x_iv = pts["iv"]
    iv = grad_batch(params, jnp.stack([jnp.zeros_like(x_iv), x_iv], axis=1))[:, 0]

    t_bc = pts["bc"]
    bc0 = u_batch(params, jnp.stack([t_bc, jnp.zeros_like(t_bc)], axis=1))
    bc1 = u_batch(params, jnp.stack([t_bc, jnp.ones_like(t_bc)], axis=1))

    return (jnp.mean(res**2) + jnp.mean(ic**2) + jnp.mean(iv**2)
            + jnp.mean(bc0**2) + jnp.mean(bc1**2))


def make_step(batch: int, dtype, lr: float):
    """The un-jitted step ``(params, m, v, t, key) -> (params, m, v, t, key, loss)``."""
    def loss_fn(params, key):
        k_res, k_ic, k_iv, k_bc = jax.random.split(key, 4)
        pts = {
            "res": jax.random.uniform(k_res, (batch, 2), dtype),
            "ic": jax.random.uniform(k_ic, (batch,), dtype),
            "iv": jax.random.uniform(k_iv, (batch,), dtype),
            "bc": jax.random.uniform(k_bc, (batch,), dtype),
        }
        return wave_loss_at(params, pts)

    def step(params, m, v, t, key):
        key, sub = jax.random.split(key)
        loss, grads = jax.value_and_grad(loss_fn)(params, sub)
        t = t + 1
        params, m, v = jc.adam_update(params, grads, m, v, t, lr=lr)
        return params, m, v, t, key, loss

    return step


def main(argv: list[str] | None = None) -> dict:
    p = jc.base_parser(__doc__.splitlines()[0], steps=50, warmup=5, dtype="float32", width=500)
    p.add_argument("--batch", type=int, default=300, help="points per loss term (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    dev, dtype = jc.init_jax(args.device, args.dtype)

    with jax.default_device(dev):
        params = jc.to_device(jc.xavier_params(jc.wave_sizes(args.width), args.seed), dev, dtype)
        m, v = jc.adam_init(params)
        t = jnp.zeros((), dtype)
        key = jax.random.PRNGKey(args.seed)
        state = (params, m, v, t, key)

        t0 = time.perf_counter()
        step = jax.jit(make_step(args.batch, dtype, args.lr)).lower(*state).compile()
        compile_s = time.perf_counter() - t0

        loss = None
        for _ in range(args.warmup):
            *state, loss = step(*state)
        jc.block(state)
        t0 = time.perf_counter()
        for _ in range(args.steps):
            *state, loss = step(*state)
        jc.block((state, loss))
        sec = (time.perf_counter() - t0) / max(args.steps, 1)

    record = {
        "impl": "jax_jit",
        "workload": "wave_step",
        "device": jc.device_kind(dev),
        "device_model": dev.device_kind,
        "dtype": args.dtype,
        "width": args.width,
        "depth": 3,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": compile_s,
        "ms_per_step": sec * 1e3,
        "final_loss": float(loss) if loss is not None else None,
        "jax": jax.__version__,
    }
    jc.emit(record)
    return record


if __name__ == "__main__":
    main()

"""JAX (jit) reference for sweep throughput: many small darcy1d jobs, one after another.

Why this exists: the JAX counterpart of ``torch_darcy_batch.py``. A jitted step
has no per-op dispatch cost, so this is the "one fused job at a time" baseline
that ``ntksweep bench`` compares its sweep throughput against, measured in the
same invocation.

Workload: identical to ``torch_darcy_batch.py``: darcy1d, ``a(y) = 2 + sin(2 pi y)``,
residual ``-a(x/eps) u'' - (1/eps) a'(x/eps) u' - f`` (f from the exact
``u = sin(2 pi x) + eps sin(2 pi x/eps)``) at ``x_k = k/101, k = 1..100``,
boundary ``u(0)``, ``u(1)`` (target 0), loss = mean residual^2 + mean
boundary^2, network ``[1, W, W, W, 1]`` tanh (``--width`` default 100),
Xavier-normal, zero biases, hand-written Adam lr 1e-3; u' and u'' by
``jax.grad`` of ``jax.grad`` of the one-point network, ``vmap`` over points;
``--jobs`` jobs (default 80), job ``j`` has ``eps = 2^-(1 + j mod 4)`` and
weights from ``numpy.random.default_rng(--seed + j)``; ``--steps`` steps each
(default 20). ``eps`` is an argument of the jitted step, so one compilation
serves every job.

Timed: the loop over jobs, each job's weight draw (numpy), transfer to the
device, Adam-state init and ``--steps`` calls of the compiled step included,
``block_until_ready`` at the end of every job. Compilation (AOT
``lower().compile()`` of the step and the state init) is excluded and
reported as ``compile_s``; before timing one untimed job of ``--warmup`` steps.

Output, one JSON line on stdout:
``{"impl": "jax_jit", "workload": "darcy_sweep", "device", "device_model",
"dtype", "width", "depth", "points", "jobs", "steps", "warmup", "compile_s",
"seconds", "job_steps_per_s", "ms_per_job_step", "final_loss_mean", "jax"}``.
"""

from __future__ import annotations

import time

import numpy as np

if __package__:
    from . import _jax_common as jc
else:  # run as a script: python analysis/reference/jax_darcy_batch.py
    import _jax_common as jc

import jax
import jax.numpy as jnp


def job_eps(j: int) -> float:
    """eps of job ``j``: cycles 2^-1, 2^-2, 2^-3, 2^-4."""
    return 2.0 ** -(1 + j % 4)


def make_step(lr: float):
    """The un-jitted step ``(params, m, v, t, x, xb, eps) -> (params, m, v, t, loss)``."""
    u = lambda params, x: jc.mlp(params, x[None])              # scalar x -> scalar u
    du = jax.grad(u, argnums=1)
    d2u = jax.grad(du, argnums=1)
    batch = lambda f: jax.vmap(f, in_axes=(None, 0))

    def loss_fn(params, x, xb, eps):
        y = x / eps
        res = (-jc.darcy_a(y) * batch(d2u)(params, x) - jc.darcy_da(y) * batch(du)(params, x) / eps
               - jc.darcy_forcing(x, eps))
        return jnp.mean(res**2) + jnp.mean(batch(u)(params, xb) ** 2)

    def step(params, m, v, t, x, xb, eps):
        loss, grads = jax.value_and_grad(loss_fn)(params, x, xb, eps)
        t = t + 1
        params, m, v = jc.adam_update(params, grads, m, v, t, lr=lr)
        return params, m, v, t, loss

    return step


def main(argv: list[str] | None = None) -> dict:
    p = jc.base_parser(__doc__.splitlines()[0], steps=20, warmup=5, dtype="float32", width=100)
    p.add_argument("--jobs", type=int, default=80)
    p.add_argument("--points", type=int, default=100, help="interior collocation points (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    dev, dtype = jc.init_jax(args.device, args.dtype)
    sizes = jc.darcy_sizes(args.width)

    with jax.default_device(dev):
        x = jax.device_put(jnp.asarray(np.linspace(0.0, 1.0, args.points + 2)[1:-1], dtype), dev)
        xb = jax.device_put(jnp.asarray([0.0, 1.0], dtype), dev)
        scalar = lambda a: jax.device_put(jnp.asarray(a, dtype), dev)

        def init_params(seed):
            return jc.to_device(jc.xavier_params(sizes, seed), dev, dtype)

        t0 = time.perf_counter()
        params0 = init_params(args.seed)
        init_state = jax.jit(lambda p_: (*jc.adam_init(p_), jnp.zeros((), dtype))).lower(params0).compile()
        m0, v0, t_0 = init_state(params0)
        step = jax.jit(make_step(args.lr)).lower(params0, m0, v0, t_0, x, xb, scalar(0.5)).compile()
        compile_s = time.perf_counter() - t0

        def run_job(eps, seed, steps):
            params = init_params(seed)
            m, v, t = init_state(params)
            e = scalar(eps)
            loss = jnp.zeros((), dtype)
            for _ in range(steps):
                params, m, v, t, loss = step(params, m, v, t, x, xb, e)
            jc.block((params, loss))
            return loss

        if args.warmup > 0:
            run_job(0.5, args.seed + 10**6, args.warmup)
        t0 = time.perf_counter()
        losses = [run_job(job_eps(j), args.seed + j, args.steps) for j in range(args.jobs)]
        sec = time.perf_counter() - t0

    job_steps = args.jobs * args.steps
    record = {
        "impl": "jax_jit",
        "workload": "darcy_sweep",
        "device": jc.device_kind(dev),
        "device_model": dev.device_kind,
        "dtype": args.dtype,
        "width": args.width,
        "depth": 3,
        "points": args.points,
        "jobs": args.jobs,
        "steps": args.steps,
        "warmup": args.warmup,
        "compile_s": compile_s,
        "seconds": sec,
        "job_steps_per_s": job_steps / sec if sec > 0 else None,
        "ms_per_job_step": sec * 1e3 / job_steps if job_steps else None,
        "final_loss_mean": float(np.mean([float(l) for l in losses])) if losses else None,
        "jax": jax.__version__,
    }
    jc.emit(record)
    return record


if __name__ == "__main__":
    main()

"""Shared pieces of the JAX reference scripts.

Why this exists: ``jax_step``, ``jax_ntk``, ``jax_darcy_batch`` and the JAX half of
``check_references`` must use the same network, exact solutions and optimizer,
and the same conventions as ``_torch_common`` so that numbers are comparable
(and, in ``check_references``, identical for identical weights).

Conventions (same as ``_torch_common``):

* parameters are a list ``[(W_0, b_0), ..., (W_L, b_L)]`` with ``W_k`` of shape
  ``[out, in]`` (torch layout; weights from torch can be passed as numpy);
  tanh after every hidden layer, linear output; Xavier-normal weights, zero biases;
* the network is written for ONE point ``z`` ``[d_in]`` -> scalar and vmapped,
  which is how input derivatives (``jax.grad``/``jax.hessian`` w.r.t. ``z``) and
  per-point parameter Jacobians (``jax.jacrev`` w.r.t. the parameters) compose;
* Adam is written by hand (no optax), with the same update as ``torch.optim.Adam``:
  ``p -= lr * m_hat / (sqrt(v_hat) + eps)``.

x64 is switched on by ``init_jax`` (after argument parsing, before any array is
created); nothing else here runs on import.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

import jax
import jax.numpy as jnp
import numpy as np

WAVE_C = 2.0


def base_parser(description: str, *, steps: int, warmup: int, dtype: str, width: int) -> argparse.ArgumentParser:
    """The options every JAX reference script shares (``--threads`` does not exist: XLA owns its pool)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=["float32", "float64"], default=dtype)
    p.add_argument("--width", type=int, default=width, help="hidden width W (default %(default)s)")
    p.add_argument("--steps", type=int, default=steps, help="timed iterations (default %(default)s)")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed iterations after compilation (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    return p


def init_jax(device: str, dtype: str):
    """Enable x64 when ``dtype == "float64"``; return ``(device_object, jnp_dtype)``.

    ``--device cuda`` selects the first GPU (``jax.devices("gpu")``); exits with a message when
    there is none.
    """
    if dtype == "float64":
        jax.config.update("jax_enable_x64", True)
    try:
        dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
    except RuntimeError as e:
        sys.exit(f"error: --device {device}: {e}")
    return dev, {"float32": jnp.float32, "float64": jnp.float64}[dtype]


# --------------------------------------------------------------------------- network


def xavier_params(sizes: list[int], seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Xavier-normal ``[(W [out, in], b [out]), ...]`` as float64 numpy, from ``numpy.random.default_rng(seed)``.

    (Not bit-identical to ``_torch_common.make_mlp``, which uses torch's generator; pass
    ``_torch_common.params_numpy(model)`` when identical weights are needed.)
    """
    rng = np.random.default_rng(seed)
    out = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        std = math.sqrt(2.0 / (fan_in + fan_out))
        out.append((rng.standard_normal((fan_out, fan_in)) * std, np.zeros(fan_out)))
    return out


def to_device(params_np, dev, dtype):
    """numpy parameter list -> jax arrays of ``dtype`` on ``dev``."""
    return [(jax.device_put(jnp.asarray(W, dtype), dev), jax.device_put(jnp.asarray(b, dtype), dev))
            for W, b in params_np]


def mlp(params, z):
    """One point: ``z`` ``[d_in]`` -> scalar ``u``. Weights in torch layout ``[out, in]``."""
    h = z
    for W, b in params[:-1]:
        h = jnp.tanh(W @ h + b)
    W, b = params[-1]
    return (W @ h + b)[0]


def wave_sizes(width: int, hidden: int = 3) -> list[int]:
    return [2] + [width] * hidden + [1]


def darcy_sizes(width: int = 100, hidden: int = 3) -> list[int]:
    return [1] + [width] * hidden + [1]


# --------------------------------------------------------------------------- exact solutions


def wave_u0(x):
    """``u(0, x) = sin(pi x) + 0.5 sin(4 pi x)``."""
    return jnp.sin(jnp.pi * x) + 0.5 * jnp.sin(4 * jnp.pi * x)


def darcy_a(y):
    return 2.0 + jnp.sin(2 * jnp.pi * y)


def darcy_da(y):
    return 2 * jnp.pi * jnp.cos(2 * jnp.pi * y)


def darcy_forcing(x, eps):
    """``f = -a(x/eps) u'' - (1/eps) a'(x/eps) u'`` for ``u = sin(2 pi x) + eps sin(2 pi x/eps)``."""
    tp = 2 * jnp.pi
    du = tp * jnp.cos(tp * x) + tp * jnp.cos(tp * x / eps)
    d2u = -(tp**2) * jnp.sin(tp * x) - (tp**2 / eps) * jnp.sin(tp * x / eps)
    y = x / eps
    return -darcy_a(y) * d2u - darcy_da(y) * du / eps


# --------------------------------------------------------------------------- Adam


def adam_init(params):
    """Zero first and second moments shaped like ``params``."""
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return zeros, jax.tree_util.tree_map(jnp.zeros_like, params)


def adam_update(params, grads, m, v, t, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """One Adam step (``t`` = 1-based step count, may be traced); returns ``(params, m, v)``."""
    tm = jax.tree_util.tree_map
    m = tm(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
    v = tm(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
    bc1 = 1 - b1**t
    bc2 = 1 - b2**t
    params = tm(lambda p, m_, v_: p - lr * (m_ / bc1) / (jnp.sqrt(v_ / bc2) + eps), params, m, v)
    return params, m, v


# --------------------------------------------------------------------------- timing / output


def block(tree) -> None:
    """``block_until_ready`` on every leaf."""
    jax.tree_util.tree_map(lambda a: a.block_until_ready(), tree)


def device_kind(dev) -> str:
    return "cuda" if dev.platform == "gpu" else dev.platform


def emit(record: dict) -> None:
    """Print the one JSON result line on stdout."""
    print(json.dumps(record), flush=True)

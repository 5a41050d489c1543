"""Correctness cross-checks of the reference implementations (float64, small sizes).

Why this exists: the reference numbers that ``ntksweep bench`` prints are only
worth comparing against if the references compute what they claim. This
script (and ``test_references.py``, which runs the same checks under pytest)
checks, in float64 at width 20 with 10 points per term:

1. ``torch_ntk``: the torch.func (``vmap(jacrev)``) Jacobian of every wave term
   equals a naive loop with one nested-autograd backward pass per point, and the
   traces and Frobenius norms of ``K_ii`` agree to a relative 1e-10;
2. the exact solutions: wave1d's ``u`` satisfies ``u_tt = 4 u_xx``,
   ``u_t(0, x) = 0``, ``u(t, 0) = u(t, 1) = 0``; darcy1d's analytic ``f`` equals
   ``-(a(x/eps) u')'`` of the exact ``u`` by autograd (eps = 1/2 ... 1/16);
3. if jax imports: ``jax_ntk.ntk_blocks`` gives the same traces and Frobenius
   norms as ``torch_ntk.ntk_blocks`` for the same weights and points (handed
   over as numpy), to a relative 1e-10;
4. if jax imports: ``jax_step.wave_loss_at`` and its parameter gradient equal
   ``torch_step.wave_loss_at`` and ``backward()`` for the same weights and the
   same points (relative 1e-10);
5. if jax imports: 3 steps of the hand-written-Adam jitted darcy step of
   ``jax_darcy_batch`` give the same losses and parameters as 3 steps of the
   ``torch_darcy_batch`` loss with ``torch.optim.Adam`` from the same weights
   (relative 1e-9).

Usage: ``python analysis/reference/check_references.py`` prints one line per
check and exits 1 if any fails (3 checks are reported as skipped without jax).
"""

from __future__ import annotations

import math
import sys

import numpy as np
import torch

if __package__:
    from . import _torch_common as tc
    from . import torch_darcy_batch, torch_ntk, torch_step
else:  # run as a script
    import _torch_common as tc
    import torch_darcy_batch
    import torch_ntk
    import torch_step

WIDTH = 20
POINTS = 10
SEED = 3
DTYPE = torch.float64
CPU = torch.device("cpu")


def rel_err(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


# --------------------------------------------------------------------------- 1. torch.func vs loop


def naive_jacobian(model: torch.nn.Module, term: str, pts: torch.Tensor) -> torch.Tensor:
    """``J`` ``[P, n_params]`` by a loop: per point, nested autograd then one backward pass."""
    params = list(model.parameters())
    rows = []
    for i in range(pts.shape[0]):
        z = pts[i : i + 1].detach().clone().requires_grad_(True)       # [1, 2]
        u = model(z)[0, 0]
        if term == "ic":
            r = u
        else:
            (du,) = torch.autograd.grad(u, z, create_graph=True)        # [1, 2]
            if term == "iv":
                r = du[0, 0]
            else:
                (d2t,) = torch.autograd.grad(du[0, 0], z, create_graph=True)
                (d2x,) = torch.autograd.grad(du[0, 1], z, create_graph=True)
                r = d2t[0, 0] - tc.WAVE_C**2 * d2x[0, 1]
        # the output bias does not reach u_t or u_tt - 4 u_xx: its gradient is exactly 0
        grads = torch.autograd.grad(r, params, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(q) if g is None else g).reshape(-1)
                               for g, q in zip(grads, params)]))
    return torch.stack(rows)


def check_torch_ntk_vs_loop() -> dict[str, float]:
    """Max relative error per term and quantity (``J``, trace, Frobenius)."""
    model = tc.make_mlp(tc.wave_sizes(WIDTH), SEED, DTYPE, CPU)
    pts = torch_ntk.ntk_points(POINTS, SEED, DTYPE, CPU)
    params = {k: v.detach() for k, v in model.named_parameters()}
    fast = torch_ntk.ntk_blocks(model, pts)
    errs = {}
    for name, r in torch_ntk.residual_fns(model).items():
        J_func = torch_ntk.term_jacobian(r, params, pts[name], None)
        J_loop = naive_jacobian(model, name, pts[name])
        K = J_loop @ J_loop.T
        errs[f"{name}.J"] = rel_err(J_func, J_loop)
        errs[f"{name}.trace"] = rel_err(fast[name][0], torch.trace(K))
        errs[f"{name}.frobenius"] = rel_err(fast[name][1], torch.linalg.matrix_norm(K))
    return errs


# --------------------------------------------------------------------------- 2. exact solutions


def check_exact_solutions() -> dict[str, float]:
    """Max absolute PDE/IC/BC defects of the exact solutions (autograd, float64)."""
    gen = torch.Generator().manual_seed(SEED)
    out = {}
    t = torch.rand(50, generator=gen, dtype=DTYPE).requires_grad_(True)
    x = torch.rand(50, generator=gen, dtype=DTYPE).requires_grad_(True)
    u = tc.wave_exact(t, x)
    (u_t,) = torch.autograd.grad(u.sum(), t, create_graph=True)
    (u_x,) = torch.autograd.grad(u.sum(), x, create_graph=True)
    (u_tt,) = torch.autograd.grad(u_t.sum(), t)
    (u_xx,) = torch.autograd.grad(u_x.sum(), x)
    out["wave.pde"] = float((u_tt - tc.WAVE_C**2 * u_xx).abs().max() / u_tt.abs().max())
    t0 = torch.zeros(50, dtype=DTYPE, requires_grad=True)
    (v0,) = torch.autograd.grad(tc.wave_exact(t0, x).sum(), t0)
    out["wave.velocity0"] = float(v0.abs().max())
    td = t.detach()
    out["wave.boundary"] = float(torch.cat([tc.wave_exact(td, torch.zeros_like(td)),
                                            tc.wave_exact(td, torch.ones_like(td))]).abs().max())
    xd = x.detach()
    out["wave.u0"] = float((tc.wave_u0(xd) - tc.wave_exact(torch.zeros_like(xd), xd)).abs().max())

    for k in range(1, 5):
        eps = 2.0**-k
        xx = torch.linspace(0, 1, 101, dtype=DTYPE)[1:-1].requires_grad_(True)
        (du,) = torch.autograd.grad(tc.darcy_exact(xx, eps).sum(), xx, create_graph=True)
        flux = tc.darcy_a(xx / eps) * du
        (dflux,) = torch.autograd.grad(flux.sum(), xx)
        f = tc.darcy_forcing(xx.detach(), eps)
        out[f"darcy.forcing.eps=2^-{k}"] = float((-dflux - f).abs().max() / f.abs().max())
        ends = tc.darcy_exact(torch.tensor([0.0, 1.0], dtype=DTYPE), eps)
        out[f"darcy.boundary.eps=2^-{k}"] = float(ends.abs().max())
    return out


# --------------------------------------------------------------------------- 3./4. jax vs torch


def check_jax_ntk_vs_torch() -> dict[str, float]:
    """Relative differences of trace/Frobenius per term, same weights and points (needs jax)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if __package__:
        from . import jax_ntk
    else:
        import jax_ntk

    model = tc.make_mlp(tc.wave_sizes(WIDTH), SEED, DTYPE, CPU)
    pts = torch_ntk.ntk_points(POINTS, SEED, DTYPE, CPU)
    t_out = torch_ntk.ntk_blocks(model, pts)
    j_params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in tc.params_numpy(model)]
    j_pts = {k: jnp.asarray(v.numpy()) for k, v in pts.items()}
    assert j_params[0][0].dtype == jnp.float64
    j_out = jax_ntk.ntk_blocks(j_params, j_pts)
    errs = {}
    for name in torch_ntk.TERMS:
        errs[f"{name}.trace"] = rel_err(float(j_out[name][0]), float(t_out[name][0]))
        errs[f"{name}.frobenius"] = rel_err(float(j_out[name][1]), float(t_out[name][1]))
    return errs


def check_jax_wave_loss_vs_torch() -> dict[str, float]:
    """Relative differences of the wave loss and its parameter gradient, same weights/points (needs jax)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if __package__:
        from . import jax_step
    else:
        import jax_step

    model = tc.make_mlp(tc.wave_sizes(WIDTH), SEED, DTYPE, CPU)
    gen = torch.Generator().manual_seed(SEED)
    pts = torch_step.sample_points(POINTS, gen, CPU, DTYPE)
    loss = torch_step.wave_loss_at(model, pts)
    loss.backward()
    t_grads = [(m.weight.grad.numpy(), m.bias.grad.numpy()) for m in model if isinstance(m, torch.nn.Linear)]

    j_params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in tc.params_numpy(model)]
    j_pts = {k: jnp.asarray(v.numpy()) for k, v in pts.items()}
    j_loss, j_grads = jax.value_and_grad(jax_step.wave_loss_at)(j_params, j_pts)
    return {
        "loss": rel_err(float(j_loss), float(loss.detach())),
        "grad": max(rel_err(np.asarray(a), b)
                    for (gWj, gbj), (gWt, gbt) in zip(j_grads, t_grads)
                    for a, b in ((gWj, gWt), (gbj, gbt)) if np.any(b)),
    }


def check_jax_darcy_step_vs_torch(steps: int = 3) -> dict[str, float]:
    """Relative differences of per-step losses and final parameters, torch Adam vs jax (needs jax)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    if __package__:
        from . import jax_darcy_batch
    else:
        import jax_darcy_batch

    errs = {}
    for eps in (0.5, 0.125):
        model = tc.make_mlp(tc.darcy_sizes(WIDTH), SEED, DTYPE, CPU)
        j_params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in tc.params_numpy(model)]
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x = torch_darcy_batch.interior_grid(100, DTYPE, CPU)
        f = tc.darcy_forcing(x, eps)
        xb = torch.tensor([[0.0], [1.0]], dtype=DTYPE)
        t_losses = []
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = torch_darcy_batch.darcy_loss(model, x, f, xb, eps)
            loss.backward()
            opt.step()
            t_losses.append(float(loss.detach()))

        step = jax.jit(jax_darcy_batch.make_step(1e-3))
        m = jax.tree_util.tree_map(jnp.zeros_like, j_params)
        v = jax.tree_util.tree_map(jnp.zeros_like, j_params)
        t = jnp.zeros((), jnp.float64)
        jx = jnp.asarray(x[:, 0].numpy())
        jxb = jnp.asarray([0.0, 1.0], jnp.float64)
        j_losses = []
        for _ in range(steps):
            j_params, m, v, t, loss = step(j_params, m, v, t, jx, jxb, jnp.asarray(eps, jnp.float64))
            j_losses.append(float(loss))

        errs[f"eps={eps}.losses"] = rel_err(j_losses, t_losses)
        t_final = tc.params_numpy(model)
        errs[f"eps={eps}.params"] = max(
            rel_err(np.asarray(a), b) for (Wj, bj), (Wt, bt) in zip(j_params, t_final) for a, b in ((Wj, Wt), (bj, bt))
        )
    return errs


# --------------------------------------------------------------------------- main

TOLERANCES = {
    "torch_ntk_vs_loop": 1e-10,
    "exact_solutions": 1e-10,
    "jax_ntk_vs_torch": 1e-10,
    "jax_wave_loss_vs_torch": 1e-10,
    "jax_darcy_step_vs_torch": 1e-9,
}


def main() -> int:
    checks = {
        "torch_ntk_vs_loop": check_torch_ntk_vs_loop,
        "exact_solutions": check_exact_solutions,
        "jax_ntk_vs_torch": check_jax_ntk_vs_torch,
        "jax_wave_loss_vs_torch": check_jax_wave_loss_vs_torch,
        "jax_darcy_step_vs_torch": check_jax_darcy_step_vs_torch,
    }
    failed = False
    for name, fn in checks.items():
        if name.startswith("jax"):
            try:
                import jax  # noqa: F401
            except ImportError:
                print(f"SKIP {name}: jax not installed")
                continue
        errs = fn()
        worst = max(errs.values())
        ok = math.isfinite(worst) and worst <= TOLERANCES[name]
        failed |= not ok
        print(f"{'PASS' if ok else 'FAIL'} {name}: max error {worst:.3e} (tolerance {TOLERANCES[name]:.0e})")
        for key, err in errs.items():
            print(f"    {key}: {err:.3e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

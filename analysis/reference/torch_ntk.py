"""torch.func reference: NTK block traces of the wave1d PINN.

Why this exists: ``ntksweep bench`` times its own exact per-point Jacobians and
NTK blocks and prints them next to this number, taken in the same invocation.
torch.func (``jacrev`` + ``vmap`` + ``functional_call``) is the idiomatic
PyTorch way to get exact per-sample parameter Jacobians, so it is the baseline.

Workload (wave1d of DESIGN.md, c = 2):

* network ``[2, W, W, W, 1]`` tanh, Xavier-normal, zero biases (``--seed``),
  in ``--dtype`` (float64 by default, float32 allowed);
* three loss terms, ``P = --points`` points each, drawn once (uniform, CPU
  generator seeded by ``--seed + 1``, so every device gets the same points):
  ``res``: ``u_tt - 4 u_xx`` at ``(t, x) ~ U[0,1]^2``;
  ``ic``: ``u(0, x)`` at ``x ~ U[0,1]`` (the target ``u0(x)`` is a constant
  shift and does not change the Jacobian);
  ``iv``: ``u_t(0, x)`` at ``x ~ U[0,1]`` (drawn separately);
* per term, ``J`` ``[P, n_params]`` = ``vmap(jacrev(r, argnums=0))`` over the
  points, where ``r(params, point)`` is the scalar residual of one point
  computed with ``functional_call`` (input derivatives by ``jacrev``/``hessian``
  of the network w.r.t. its input); the per-parameter blocks are flattened
  and concatenated (parameter order of ``model.named_parameters()``);
* ``K = J J^T`` ``[P, P]``, then ``trace(K)`` and ``||K||_F``.

Timed: one repetition = all three terms (Jacobian, K, trace, Frobenius) with
the scalars copied to the host; ``--steps`` repetitions after ``--warmup``
untimed ones, CUDA synchronised. Model and point construction not timed.
``--chunk`` passes ``chunk_size`` to ``vmap`` to cap memory (default: all points
at once; J of one term at width 500 and P = 300 is 1.2 GB in float64).

Output, one JSON line on stdout:
``{"impl": "torch_func", "workload": "ntk_traces", "device", "device_model",
"dtype", "width", "depth", "points", "terms", "n_params", "steps", "warmup",
"threads", "ms", "trace": {"res", "ic", "iv"}, "frobenius": {"res", "ic", "iv"},
"torch"}``; ``ms`` is milliseconds per repetition (all three terms).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch.func import functional_call, hessian, jacrev, vmap

if __package__:
    from . import _torch_common as tc
else:  # run as a script: python analysis/reference/torch_ntk.py
    import _torch_common as tc

TERMS = ("res", "ic", "iv")


def ntk_points(points: int, seed: int, dtype: torch.dtype, device: torch.device) -> dict[str, torch.Tensor]:
    """The NTK points of each term in network coordinates ``(t, x)``, each ``[P, 2]``.

    Drawn on the CPU in float64 with ``Generator().manual_seed(seed + 1)`` so every device,
    dtype and implementation (``jax_ntk`` takes these as numpy) sees the same points.
    """
    gen = torch.Generator().manual_seed(seed + 1)
    tx_res = torch.rand(points, 2, generator=gen, dtype=torch.float64)
    x_ic = torch.rand(points, generator=gen, dtype=torch.float64)
    x_iv = torch.rand(points, generator=gen, dtype=torch.float64)
    zeros = torch.zeros(points, dtype=torch.float64)
    pts = {
        "res": tx_res,
        "ic": torch.stack([zeros, x_ic], dim=1),
        "iv": torch.stack([zeros, x_iv], dim=1),
    }
    return {k: v.to(device=device, dtype=dtype) for k, v in pts.items()}


def residual_fns(model: torch.nn.Module) -> dict[str, Callable]:
    """Per-point residuals ``r(params, point[2]) -> scalar`` of each term, for torch.func."""
    def u(params: dict, tx: torch.Tensor) -> torch.Tensor:
        return functional_call(model, params, (tx.unsqueeze(0),))[0, 0]

    def r_res(params: dict, tx: torch.Tensor) -> torch.Tensor:
        h = hessian(u, argnums=1)(params, tx)                 # [2, 2]
        return h[0, 0] - tc.WAVE_C**2 * h[1, 1]

    def r_ic(params: dict, tx: torch.Tensor) -> torch.Tensor:
        return u(params, tx)

    def r_iv(params: dict, tx: torch.Tensor) -> torch.Tensor:
        return jacrev(u, argnums=1)(params, tx)[0]

    return {"res": r_res, "ic": r_ic, "iv": r_iv}


def term_jacobian(r: Callable, params: dict, pts: torch.Tensor, chunk: int | None) -> torch.Tensor:
    """``J`` ``[P, n_params]``: exact per-point gradients of ``r`` w.r.t. all parameters."""
    jac = vmap(jacrev(r, argnums=0), in_dims=(None, 0), chunk_size=chunk)(params, pts)
    return torch.cat([j.reshape(pts.shape[0], -1) for j in jac.values()], dim=1)


def ntk_blocks(model: torch.nn.Module, pts: dict[str, torch.Tensor],
               chunk: int | None = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{term: (trace K_ii, ||K_ii||_F)}`` as 0-d tensors on the model's device."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    out = {}
    for name, r in residual_fns(model).items():
        J = term_jacobian(r, params, pts[name], chunk)
        K = J @ J.T
        out[name] = (torch.trace(K), torch.linalg.matrix_norm(K))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = tc.base_parser(__doc__.splitlines()[0], steps=20, warmup=3, dtype="float64", width=500)
    p.add_argument("--points", type=int, default=300, help="points per term (default %(default)s)")
    p.add_argument("--chunk", type=int, default=None, help="vmap chunk_size (default: all points)")
    args = p.parse_args(argv)
    device, dtype = tc.setup(args)

    model = tc.make_mlp(tc.wave_sizes(args.width), args.seed, dtype, device)
    pts = ntk_points(args.points, args.seed, dtype, device)
    last: dict = {}

    def rep() -> None:
        blocks = ntk_blocks(model, pts, args.chunk)
        last.update({k: (float(tr), float(fr)) for k, (tr, fr) in blocks.items()})

    sec = tc.time_loop(rep, args.steps, args.warmup, device)
    record = {
        "impl": "torch_func",
        "workload": "ntk_traces",
        "device": device.type,
        "device_model": tc.device_model(device),
        "dtype": args.dtype,
        "width": args.width,
        "depth": 3,
        "points": args.points,
        "terms": list(TERMS),
        "n_params": sum(q.numel() for q in model.parameters()),
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "ms": sec * 1e3,
        "trace": {k: last[k][0] for k in TERMS} if last else None,
        "frobenius": {k: last[k][1] for k in TERMS} if last else None,
        "torch": torch.__version__,
    }
    tc.emit(record)
    return record


if __name__ == "__main__":
    main()

"""PyTorch eager reference for sweep throughput: many small darcy1d jobs, one after another.

Why this exists: a sweep is many small PINN jobs (eps x seeds x ...). The
obvious way to run them with PyTorch is a loop that trains one network after
another; ``ntksweep bench`` reports its own job-steps per second (e.g. with the
jobs of a grid batched into one network) next to this baseline, measured in the
same invocation.

Workload (darcy1d of DESIGN.md):

* ``-(a(x/eps) u')' = f`` on (0, 1), ``a(y) = 2 + sin(2 pi y)``, exact
  ``u = sin(2 pi x) + eps sin(2 pi x/eps)``, ``f`` from the exact ``u``
  analytically (``_torch_common.darcy_forcing``);
* residual ``-a(x/eps) u'' - (1/eps) a'(x/eps) u' - f`` at the 100 equispaced
  interior points ``x_k = k/101, k = 1..100`` (fixed grid), boundary ``u(0)``,
  ``u(1)`` (target 0); u' and u'' by nested ``torch.autograd.grad``
  (``create_graph=True``);
* loss = mean residual^2 + mean boundary^2; network ``[1, W, W, W, 1]`` tanh
  (``--width`` default 100), Xavier-normal, zero biases; Adam lr 1e-3;
* ``--jobs`` jobs (default 80): job ``j`` has ``eps = 2^-(1 + j mod 4)`` and
  seed ``--seed + j``; each trains ``--steps`` steps (default 20).

Timed: the whole loop over jobs, each job's network/optimizer construction,
grid and forcing set-up and its ``--steps`` Adam steps included (that is what a
sweep pays per job), CUDA synchronised at the start and end. Before it, one
untimed job of ``--warmup`` steps (eps = 1/2) warms the allocator and kernels.

Output, one JSON line on stdout:
``{"impl": "torch_eager", "workload": "darcy_sweep", "device", "device_model",
"dtype", "width", "depth", "points", "jobs", "steps", "warmup", "threads",
"seconds", "job_steps_per_s", "ms_per_job_step", "final_loss_mean", "torch"}``.
"""

from __future__ import annotations

import time

import torch

if __package__:
    from . import _torch_common as tc
else:  # run as a script: python analysis/reference/torch_darcy_batch.py
    import _torch_common as tc


def job_eps(j: int) -> float:
    """eps of job ``j``: cycles 2^-1, 2^-2, 2^-3, 2^-4."""
    return 2.0 ** -(1 + j % 4)


def interior_grid(points: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``[points, 1]``: ``x_k = k / (points + 1)``, ``k = 1..points``."""
    return torch.linspace(0.0, 1.0, points + 2, dtype=torch.float64)[1:-1, None].to(device=device, dtype=dtype)


def darcy_loss(model: torch.nn.Module, x: torch.Tensor, f: torch.Tensor, xb: torch.Tensor, eps: float) -> torch.Tensor:
    """Scalar loss: mean residual^2 on ``x`` ``[N, 1]`` + mean ``u(xb)^2`` on ``xb`` ``[2, 1]``."""
    x = x.detach().requires_grad_(True)
    u = model(x)
    (du,) = torch.autograd.grad(u.sum(), x, create_graph=True)      # [N, 1]
    (d2u,) = torch.autograd.grad(du.sum(), x, create_graph=True)    # [N, 1]
    y = x / eps
    res = -tc.darcy_a(y) * d2u - tc.darcy_da(y) * du / eps - f
    return res.square().mean() + model(xb).square().mean()


def run_job(eps: float, seed: int, args, device: torch.device, dtype: torch.dtype, steps: int) -> float:
    """Build and train one job for ``steps`` Adam steps; return the last loss (synchronises)."""
    model = tc.make_mlp(tc.darcy_sizes(args.width), seed, dtype, device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    x = interior_grid(args.points, dtype, device)
    f = tc.darcy_forcing(x, eps)
    xb = torch.tensor([[0.0], [1.0]], dtype=dtype, device=device)
    loss = torch.zeros((), dtype=dtype, device=device)
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = darcy_loss(model, x, f, xb, eps)
        loss.backward()
        opt.step()
    return loss.detach()


def main(argv: list[str] | None = None) -> dict:
    p = tc.base_parser(__doc__.splitlines()[0], steps=20, warmup=5, dtype="float32", width=100)
    p.add_argument("--jobs", type=int, default=80)
    p.add_argument("--points", type=int, default=100, help="interior collocation points (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    device, dtype = tc.setup(args)

    if args.warmup > 0:
        run_job(0.5, args.seed + 10**6, args, device, dtype, args.warmup)
    tc.sync(device)
    t0 = time.perf_counter()
    losses = [run_job(job_eps(j), args.seed + j, args, device, dtype, args.steps) for j in range(args.jobs)]
    tc.sync(device)
    sec = time.perf_counter() - t0

    job_steps = args.jobs * args.steps
    record = {
        "impl": "torch_eager",
        "workload": "darcy_sweep",
        "device": device.type,
        "device_model": tc.device_model(device),
        "dtype": args.dtype,
        "width": args.width,
        "depth": 3,
        "points": args.points,
        "jobs": args.jobs,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "seconds": sec,
        "job_steps_per_s": job_steps / sec if sec > 0 else None,
        "ms_per_job_step": sec * 1e3 / job_steps if job_steps else None,
        "final_loss_mean": float(torch.stack(losses).mean()) if losses else None,
        "torch": torch.__version__,
    }
    tc.emit(record)
    return record


if __name__ == "__main__":
    main()

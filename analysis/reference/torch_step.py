"""PyTorch eager reference: one Adam training step of the wave1d PINN.

Why this exists: ``ntksweep bench`` times its own training step for the wave
problem and prints it next to this number, measured in the same invocation on
the same machine, so "how fast is ntksweep" always has a baseline a PINN user
recognises: plain PyTorch with nested ``torch.autograd.grad``.

Workload (wave1d of DESIGN.md, c = 2):

* network ``[2, W, W, W, 1]`` tanh, Xavier-normal weights, zero biases;
  input column 0 is ``t``, column 1 is ``x``;
* every step draws fresh uniform points (a ``torch.Generator`` on the device,
  seeded by ``--seed``), ``B = --batch`` per term:
  residual ``(t, x) ~ U[0,1]^2`` (B), initial value ``x ~ U[0,1]`` (B),
  initial velocity ``x ~ U[0,1]`` (B, drawn separately), boundary ``t ~ U[0,1]`` (B,
  used on both sides ``x = 0`` and ``x = 1``);
* loss = mean (u_tt - c^2 u_xx)^2 + mean (u(0,x) - u0(x))^2 + mean u_t(0,x)^2
  + mean u(t,0)^2 + mean u(t,1)^2, with u0(x) = sin(pi x) + 0.5 sin(4 pi x);
  u_tt and u_xx by nested ``torch.autograd.grad(..., create_graph=True)``;
* ``loss.backward()`` and ``torch.optim.Adam(lr=1e-3)`` step.

Timed: ``--steps`` whole steps (sampling + forward + nested derivatives +
backward + Adam) after ``--warmup`` untimed steps, wall clock, with
``torch.cuda.synchronize`` before and after on CUDA. Network construction is
not timed.

Output, one JSON line on stdout:
``{"impl": "torch_eager", "workload": "wave_step", "device", "device_model",
"dtype", "width", "depth", "batch", "steps", "warmup", "threads",
"ms_per_step", "final_loss", "torch"}``.
"""

from __future__ import annotations

import torch

if __package__:
    from . import _torch_common as tc
else:  # run as a script: python analysis/reference/torch_step.py
    import _torch_common as tc


def sample_points(batch: int, gen: torch.Generator, device: torch.device,
                  dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Fresh uniform points per term: ``res`` ``[B, 2]`` (t, x); ``ic``, ``iv`` ``[B]`` (x); ``bc`` ``[B]`` (t)."""
    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=gen, device=device, dtype=dtype)

    return {"res": rand(batch, 2), "ic": rand(batch), "iv": rand(batch), "bc": rand(batch)}


def wave_loss_at(model: torch.nn.Module, pts: dict[str, torch.Tensor]) -> torch.Tensor:
    """Scalar wave1d PINN loss (sum of 5 mean-squared terms) at the points of ``sample_points``."""
    # residual: u_tt - c^2 u_xx on the interior, [B, 2]
    tx = pts["res"].detach().requires_grad_(True)
    u = model(tx)
    (du,) = torch.autograd.grad(u.sum(), tx, create_graph=True)          # [B, 2]
    (d2u_t,) = torch.autograd.grad(du[:, 0].sum(), tx, create_graph=True)
    (d2u_x,) = torch.autograd.grad(du[:, 1].sum(), tx, create_graph=True)
    res = d2u_t[:, 0] - tc.WAVE_C**2 * d2u_x[:, 1]                       # [B]

    # initial value u(0, x) = u0(x)
    x_ic = pts["ic"][:, None]
    ic = model(torch.cat([torch.zeros_like(x_ic), x_ic], dim=1))[:, 0] - tc.wave_u0(x_ic[:, 0])

    # initial velocity u_t(0, x) = 0
    x_iv = pts["iv"][:, None]
    tx_iv = torch.cat([torch.zeros_like(x_iv), x_iv], dim=1).requires_grad_(True)
    (du_iv,) = torch.autograd.grad(model(tx_iv).sum(), tx_iv, create_graph=True)
    iv = du_iv[:, 0]

    # boundary u(t, 0) = u(t, 1) = 0
    t_bc = pts["bc"][:, None]
    bc0 = model(torch.cat([t_bc, torch.zeros_like(t_bc)], dim=1))[:, 0]
    bc1 = model(torch.cat([t_bc, torch.ones_like(t_bc)], dim=1))[:, 0]

    return (res.square().mean() + ic.square().mean() + iv.square().mean()
            + bc0.square().mean() + bc1.square().mean())


def wave_loss(model: torch.nn.Module, batch: int, gen: torch.Generator,
              device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Sample a fresh batch (``B`` points per term) and return the scalar wave1d PINN loss."""
    return wave_loss_at(model, sample_points(batch, gen, device, dtype))


def main(argv: list[str] | None = None) -> dict:
    p = tc.base_parser(__doc__.splitlines()[0], steps=50, warmup=5, dtype="float32", width=500)
    p.add_argument("--batch", type=int, default=300, help="points per loss term (default %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3)
    args = p.parse_args(argv)
    device, dtype = tc.setup(args)

    model = tc.make_mlp(tc.wave_sizes(args.width), args.seed, dtype, device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    gen = torch.Generator(device=device).manual_seed(args.seed)
    last = {}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = wave_loss(model, args.batch, gen, device, dtype)
        loss.backward()
        opt.step()
        last["loss"] = loss

    sec = tc.time_loop(step, args.steps, args.warmup, device)
    record = {
        "impl": "torch_eager",
        "workload": "wave_step",
        "device": device.type,
        "device_model": tc.device_model(device),
        "dtype": args.dtype,
        "width": args.width,
        "depth": 3,
        "batch": args.batch,
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": torch.get_num_threads(),
        "ms_per_step": sec * 1e3,
        "final_loss": float(last["loss"].detach()) if last else None,
        "torch": torch.__version__,
    }
    tc.emit(record)
    return record


if __name__ == "__main__":
    main()

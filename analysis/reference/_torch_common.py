"""Shared pieces of the PyTorch reference scripts.

Why this exists: every PyTorch reference (``torch_step``, ``torch_ntk``,
``torch_darcy_batch``) and the cross-check (``check_references``) must build the
*same* network and use the *same* exact solutions, otherwise the numbers they
report are not comparable with each other, with the JAX references or with
``ntksweep bench``. Nothing here runs on import; nothing here is timed.

Conventions (shared with ``_jax_common``):

* MLP ``[d_in, W, ..., W, 1]`` with tanh after every hidden layer, a linear
  output; weights Xavier-normal (``std = sqrt(2 / (fan_in + fan_out))``),
  biases zero. Layer ``k`` weight has torch shape ``[out, in]``.
* wave1d (DESIGN.md): ``u_tt = c^2 u_xx`` on ``(t, x) in [0, 1]^2``, ``c = 2``,
  exact ``u = sin(pi x) cos(2 pi t) + 0.5 sin(4 pi x) cos(8 pi t)``. Network
  input column 0 is ``t``, column 1 is ``x``.
* darcy1d (DESIGN.md): ``-(a(x/eps) u')' = f`` on ``(0, 1)``,
  ``a(y) = 2 + sin(2 pi y)``, exact ``u = sin(2 pi x) + eps sin(2 pi x / eps)``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from typing import Callable, Sequence

import torch
from torch import nn

WAVE_C = 2.0
DTYPES = {"float32": torch.float32, "float64": torch.float64}


# --------------------------------------------------------------------------- network


def make_mlp(sizes: Sequence[int], seed: int, dtype: torch.dtype, device: torch.device) -> nn.Sequential:
    """MLP ``sizes = [d_in, W, ..., W, d_out]``, tanh between layers, Xavier-normal init.

    # Shapes
    input ``[N, d_in]`` -> output ``[N, d_out]``.

    The weights are drawn on the CPU in float64 from ``torch.Generator().manual_seed(seed)``
    and then cast/moved, so the same seed gives the same network on every device and dtype.
    """
    gen = torch.Generator().manual_seed(seed)
    layers: list[nn.Module] = []
    for k, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(fan_in, fan_out)
        std = math.sqrt(2.0 / (fan_in + fan_out))
        with torch.no_grad():
            w = torch.randn(fan_out, fan_in, generator=gen, dtype=torch.float64) * std
            lin.weight.copy_(w)
            lin.bias.zero_()
        layers.append(lin)
        if k < len(sizes) - 2:
            layers.append(nn.Tanh())
    return nn.Sequential(*layers).to(device=device, dtype=dtype)


def wave_sizes(width: int, hidden: int = 3) -> list[int]:
    """``[2, W, W, W, 1]`` for the wave problem (input ``(t, x)``)."""
    return [2] + [width] * hidden + [1]


def darcy_sizes(width: int = 100, hidden: int = 3) -> list[int]:
    """``[1, W, W, W, 1]`` for darcy1d (input ``x``)."""
    return [1] + [width] * hidden + [1]


def params_numpy(model: nn.Sequential) -> list[tuple]:
    """``[(W_k, b_k), ...]`` as float64 numpy arrays, torch layout (``W_k`` is ``[out, in]``).

    This is the hand-over format to ``_jax_common`` (``check_references``).
    """
    return [
        (m.weight.detach().cpu().double().numpy(), m.bias.detach().cpu().double().numpy())
        for m in model
        if isinstance(m, nn.Linear)
    ]


# --------------------------------------------------------------------------- exact solutions


def wave_exact(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """wave1d exact solution ``sin(pi x) cos(2 pi t) + 0.5 sin(4 pi x) cos(8 pi t)``."""
    pi = math.pi
    return torch.sin(pi * x) * torch.cos(2 * pi * t) + 0.5 * torch.sin(4 * pi * x) * torch.cos(8 * pi * t)


def wave_u0(x: torch.Tensor) -> torch.Tensor:
    """Initial value ``u(0, x) = sin(pi x) + 0.5 sin(4 pi x)``."""
    return wave_exact(torch.zeros_like(x), x)


def darcy_a(y: torch.Tensor) -> torch.Tensor:
    """Coefficient ``a(y) = 2 + sin(2 pi y)``."""
    return 2.0 + torch.sin(2 * math.pi * y)


def darcy_da(y: torch.Tensor) -> torch.Tensor:
    """``a'(y) = 2 pi cos(2 pi y)``."""
    return 2 * math.pi * torch.cos(2 * math.pi * y)


def darcy_exact(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``u(x) = sin(2 pi x) + eps sin(2 pi x / eps)`` (vanishes at 0 and 1 when 1/eps is an integer)."""
    return torch.sin(2 * math.pi * x) + eps * torch.sin(2 * math.pi * x / eps)


def darcy_forcing(x: torch.Tensor, eps: float) -> torch.Tensor:
    """``f = -(a(x/eps) u')' = -a(x/eps) u'' - (1/eps) a'(x/eps) u'`` for the exact ``u``.

    With ``u' = 2 pi cos(2 pi x) + 2 pi cos(2 pi x/eps)`` and
    ``u'' = -4 pi^2 sin(2 pi x) - (4 pi^2/eps) sin(2 pi x/eps)``.
    """
    tp = 2 * math.pi
    du = tp * torch.cos(tp * x) + tp * torch.cos(tp * x / eps)
    d2u = -(tp**2) * torch.sin(tp * x) - (tp**2 / eps) * torch.sin(tp * x / eps)
    y = x / eps
    return -darcy_a(y) * d2u - darcy_da(y) * du / eps


# --------------------------------------------------------------------------- CLI / timing


def base_parser(description: str, *, steps: int, warmup: int, dtype: str, width: int | None) -> argparse.ArgumentParser:
    """The options every PyTorch reference script shares."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=dtype)
    if width is not None:
        p.add_argument("--width", type=int, default=width, help="hidden width W (default %(default)s)")
    p.add_argument("--steps", type=int, default=steps, help="timed iterations (default %(default)s)")
    p.add_argument("--warmup", type=int, default=warmup, help="untimed iterations first (default %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    return p


def setup(args: argparse.Namespace) -> tuple[torch.device, torch.dtype]:
    """Apply ``--threads``/``--seed``; resolve ``--device``/``--dtype``. Fails loudly if CUDA is absent."""
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("error: --device cuda but torch.cuda.is_available() is false")
    return torch.device(args.device), DTYPES[args.dtype]


def sync(device: torch.device) -> None:
    """Wait for queued CUDA work so wall-clock timings are real (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loop(fn: Callable[[], object], steps: int, warmup: int, device: torch.device) -> float:
    """Run ``fn`` ``warmup`` times untimed, then ``steps`` times timed; return seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - t0) / max(steps, 1)


def device_model(device: torch.device) -> str:
    """The GPU's name on CUDA, ``"cpu"`` otherwise (the JSON ``device_model`` key)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "cpu"


def emit(record: dict) -> None:
    """Print the one JSON result line on stdout (everything else goes to stderr)."""
    print(json.dumps(record), flush=True)

"""`alpha.fit: converge`: α fitted to the minimiser of the target's whole-dev loss.

The paper's fixed budget (alpha.steps Adam steps of alpha.lr) moves each α_k by about lr
per step whatever its gradient, so 20 steps leave α within about init ± 1 and record
little beyond the gradient's sign. α has only K coordinates, so a quasi-Newton method on
the exact objective is cheap: L-BFGS with a strong-Wolfe line search, on the whole dev
split (no minibatch noise: the line search needs a deterministic function, and the
minimiser of the dev loss is what α is meant to be), until the gradient norm is below
alpha.tol or alpha.max_iter iterations have run. Only torch here: the caller passes the
function (alphavil/methods/deltas.py estimate_alpha).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

# (α) -> (whole-dev mean loss, its gradient with respect to α); one call = one dev pass
LossAndGrad = Callable[[torch.Tensor], tuple[float, torch.Tensor]]


def fit_record(fit: str, grad: torch.Tensor, steps: int, passes: int, dev_examples: int,
               example_passes: int, tol: float) -> dict:
    """What an α artifact says about how its fit ended (both fits, same keys)."""
    norm = float(grad.double().norm()) if grad.numel() else 0.0
    return {"fit": fit, "grad_norm": norm, "steps": steps, "dev_passes": passes,
            "dev_examples": dev_examples, "example_passes": example_passes,
            "converged": norm <= tol}


def lbfgs_minimise(alpha: torch.Tensor, loss_and_grad: LossAndGrad, *, tol: float,
                   max_iter: int, where: str) -> tuple[list[float], dict]:
    """Minimise over α (a leaf tensor, changed in place) with L-BFGS + strong Wolfe.

    Returns the whole-dev loss of every evaluation and (iterations, evaluations, final
    gradient). L-BFGS stops on the largest |∂L/∂α_k|; asking for tol/√K there makes the
    2-norm, which the record reports, at most tol."""
    losses: list[float] = []

    def closure() -> torch.Tensor:
        value, grad = loss_and_grad(alpha.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{where}: dev loss is {value} at α = "
                                     f"{alpha.detach().tolist()} (alpha.fit converge)")
        losses.append(value)
        alpha.grad = grad.to(alpha.dtype)
        return torch.tensor(value, dtype=alpha.dtype)

    k = alpha.numel()
    opt = torch.optim.LBFGS([alpha], lr=1.0, max_iter=max_iter, max_eval=max_iter * 5 // 4 + 25,
                            tolerance_grad=tol / math.sqrt(max(k, 1)), tolerance_change=1e-12,
                            history_size=max(10, 2 * k), line_search_fn="strong_wolfe")
    opt.step(closure)
    if not torch.isfinite(alpha).all():
        raise FloatingPointError(f"{where}: α became {alpha.detach().tolist()} "
                                 "(alpha.fit converge)")
    iterations = int(opt.state[alpha].get("n_iter", 0))
    # the gradient at the α L-BFGS stopped at, measured once more: its last evaluation
    # may have been a rejected line-search trial point. It may stay above tol: a ReLU
    # network's dev loss is only piecewise smooth (its gradient jumps by ~1/n_dev at each
    # kink), and the record says so (converged: false) rather than hiding it.
    value, grad = loss_and_grad(alpha.detach())
    losses.append(value)
    return losses, {"iterations": iterations, "evaluations": len(losses), "grad": grad}

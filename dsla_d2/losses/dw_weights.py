"""DW's weighting functions (Li et al., CVPR 2022, §3.2-3.3) on sparse candidate pairs.

Every function works on P in-bag (point, gt) pairs with a (P,) ``bag`` id (one id per
(image, gt), :attr:`CandidatePairs.bag`); per-bag sums, minima and maxima are segment
reductions (``scatter_reduce``), never a dense points × gts grid. Forms:

* **code** (default; the authors' ``dw_head.py``, which produced the published numbers):
  t = s·exp(−β·L) with L = 1 − GIoU (``p_loc`` stands in for u^β);
  w_pos = e^{μt}·t·G / Σ_bag e^{μ'·t}·t·G with μ = 5 on top and μ' = 3 below (on purpose:
  the weights of a bag do not sum to 1); P_neg from f(u) = (1 − u^γ1)/(1 − 0.5^γ1)
  (= 4/3·(1 − u²) for γ1 = 2, through (0.5, 1) and (1, 0)), rescaled per bag.
* **paper**: t = s·u^β (eq. 3, u the IoU of the predicted box with the gt); w_pos =
  e^{μt}·t (eq. 4) times the centre prior, normalised to sum 1 over the bag; P_neg the fixed
  curve of eqs. 5-6: 1 for u < 0.5, −k·u^γ1 + b on [0.5, 0.95), 0 beyond, with k, b fixed
  by (0.5, 1) and (0.95, 0).
"""
import torch
from torch import Tensor

__all__ = [
    "FORMS",
    "consistency",
    "positive_weights",
    "p_neg_curve",
    "bag_rescaled_p_neg",
    "segment_sum",
    "segment_min",
    "segment_max",
]

FORMS = ("code", "paper")
EPS = 1e-12  # the code's EPS: w_pos denominator clamp and P_neg rescaling


def segment_sum(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """(S,) sum of ``values`` (P,) per segment id (P,) in [0, S)."""
    return values.new_zeros(num_segments).index_add(0, segment, values)


def segment_min(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """(S,) minimum per segment (+inf for an empty segment)."""
    init = values.new_full((num_segments,), float("inf"))
    return init.scatter_reduce(0, segment, values, "amin")


def segment_max(values: Tensor, segment: Tensor, num_segments: int) -> Tensor:
    """(S,) maximum per segment (−inf for an empty segment)."""
    init = values.new_full((num_segments,), float("-inf"))
    return init.scatter_reduce(0, segment, values, "amax")


def consistency(score: Tensor, loc_loss: Tensor, iou: Tensor, beta: float = 5.0, form: str = "code") -> Tensor:
    """Consistency t of each pair (eq. 3).

    Args:
        score: (P,) s = cls·objectness at the gt's class.
        loc_loss: (P,) L = 1 − GIoU of the predicted box with the gt ("code": t = s·e^{−βL}).
        iou: (P,) IoU u of the predicted box with the gt ("paper": t = s·u^β).
    """
    if form == "code":
        return score * torch.exp(-beta * loc_loss)
    if form == "paper":
        return score * iou.clamp(min=0) ** beta
    raise ValueError(f"form={form!r} is not one of {FORMS}")


def positive_weights(
    t: Tensor,
    prior: Tensor,
    bag: Tensor,
    num_bags: int,
    mu: float = 5.0,
    mu_norm: float = 3.0,
    form: str = "code",
) -> Tensor:
    """w_pos of each pair (eq. 4 and the bag normalisation; see the module docstring).

    Args:
        t: (P,) consistency; prior: (P,) centre prior G; bag: (P,) bag id in [0, num_bags).
        mu: μ of the numerator e^{μt}; mu_norm: the code's exponent in the denominator
            ("paper" normalises the numerator itself, so ``mu_norm`` is unused).
    Returns:
        (P,) weights; 0 for a bag whose denominator is 0 (the code clamps it at 1e-12).
    """
    top = torch.exp(mu * t) * t * prior
    if form == "code":
        below = torch.exp(mu_norm * t) * t * prior
    elif form == "paper":
        below = top
    else:
        raise ValueError(f"form={form!r} is not one of {FORMS}")
    return top / segment_sum(below, bag, num_bags).clamp(min=EPS)[bag]


def p_neg_curve(iou: Tensor, gamma: float = 2.0, form: str = "code") -> Tensor:
    """The probability of being negative as a fixed function of the IoU u (eqs. 5-6).

    "code": f(u) = (1 − u^γ1)/(1 − 0.5^γ1) for u ≥ 0.5, 1 below (before the bag
    rescaling of :func:`bag_rescaled_p_neg`); "paper": (0.95^γ1 − u^γ1)/(0.95^γ1 − 0.5^γ1)
    on [0.5, 0.95), 1 below, 0 from 0.95 on.
    """
    if form not in FORMS:
        raise ValueError(f"form={form!r} is not one of {FORMS}")
    top = 1.0 if form == "code" else 0.95
    u = iou.clamp(min=0, max=1)
    p = (top**gamma - u**gamma) / (top**gamma - 0.5**gamma)
    p = torch.where(u < 0.5, torch.ones_like(p), p)
    return p.clamp(min=0)


def bag_rescaled_p_neg(iou: Tensor, bag: Tensor, num_bags: int, gamma: float = 2.0) -> Tensor:
    """The code's P_neg: x = f(u) over each bag, t1 = min x, t2 = min(1, max x),
    P = (x − t1 + ε)/(t2 − t1 + ε), and P = 1 where u < 0.5 (``dw_head.py`` normalize()).

    The minimum and maximum run over the whole bag, members with u < 0.5 included; a
    single-point bag gets ε/ε = 1.
    """
    u = iou.clamp(min=0, max=1)
    x = (1 - u**gamma) / (1 - 0.5**gamma)  # f without the u < 0.5 rule: the code rescales this
    t1 = segment_min(x, bag, num_bags)[bag]
    t2 = segment_max(x, bag, num_bags).clamp(max=1.0)[bag]
    # t2 ≥ t1 whenever a member has u ≥ 0.5; otherwise every P is replaced by 1 below, and
    # the clamp only keeps the discarded values finite.
    p = (x - t1 + EPS) / ((t2 - t1).clamp(min=0) + EPS)
    return torch.where(u < 0.5, torch.ones_like(p), p)

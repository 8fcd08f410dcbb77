"""The shared sparse pieces: per-prior resolution (winners.py) and ATSS's windowed
k-nearest candidates (nearest.py)."""

import pytest
import torch

import dsla_d2  # noqa: F401
from dsla_d2.assigners.atss_core import select_topk_candidates
from dsla_d2.assigners.nearest import nearest_candidates, window_half_widths
from dsla_d2.assigners.pairs import CandidatePairs
from dsla_d2.assigners.winners import PriorWinners
from dsla_d2.priors import PriorGenerator, Priors


# --------------------------------------------------------------------------- PriorWinners
# One image, 4 priors; pairs (prior, gt, label, area), DSLA's rule (label ↑, area ↓, gt ↓):
#   prior 0: gt 2 (0.5, 10), gt 1 (0.5, 10), gt 0 (0.4, 1) → labels tie at 0.5, areas tie
#            at 10 → the lower index: gt 1;
#   prior 1: gt 0 (0.7, 20), gt 3 (0.7, 5) → tie on label, smaller area: gt 3;
#   prior 2: no pair → −1;  prior 3: gt 2 (0.1, 1) alone → gt 2.
PAIRS = [(0, 2, 0.5, 10.0), (1, 0, 0.7, 20.0), (0, 1, 0.5, 10.0), (3, 2, 0.1, 1.0), (0, 0, 0.4, 1.0), (1, 3, 0.7, 5.0)]


def merge(winners, rows):
    prior = torch.tensor([r[0] for r in rows], dtype=torch.long)
    gt = torch.tensor([r[1] for r in rows], dtype=torch.long)
    label = torch.tensor([r[2] for r in rows])
    area = torch.tensor([r[3] for r in rows])
    pairs = CandidatePairs(torch.zeros_like(prior), prior, gt, 4)
    winners.update(pairs, [label, area], {"label": label})


@pytest.mark.parametrize("split", [6, 1, 3])
def test_lexicographic_winner_in_any_chunking(split):
    w = PriorWinners(1, 4, ("max", "min", "min"))
    for a in range(0, len(PAIRS), split):  # chunks merge into the same result
        merge(w, PAIRS[a : a + split][::-1])
    assert w.matched.tolist() == [[1, 3, -1, 2]]
    assert w.value("label")[0].tolist() == pytest.approx([0.5, 0.7, 0.0, 0.1])


def test_winner_rules_are_checked():
    with pytest.raises(ValueError, match="modes"):
        PriorWinners(1, 4, ("max", "largest"))
    w = PriorWinners(1, 4, ("max", "min", "min"))
    with pytest.raises(ValueError, match="2 keys"):
        w.update(CandidatePairs.empty(4), [torch.zeros(0)])
    assert PriorWinners(2, 3, ("min",)).matched.tolist() == [[-1] * 3] * 2  # nothing merged


# --------------------------------------------------------------------------- nearest
def test_window_half_widths_by_hand():
    # k = 9: m = ⌈(3 − 1)/2⌉ = 1, h = ⌊√2·1.5 − 0.5⌋ + 1 = ⌊1.62⌋ + 1 = 2 (5×5 window:
    # outside ≥ 2.5 s > √2·1.5 s = 2.12 s); outside the hull h' = max(2, ⌈8/2⌉) = 4.
    assert window_half_widths(9) == (2, 4)
    # k = 1: m = 0, h = ⌊0.707 − 0.5⌋ + 1 = 1; h' = max(1, 0) = 1.
    assert window_half_widths(1) == (1,)
    # k = 4: m = ⌈0.5⌉ = 1 → h = 2; h' = max(2, ⌈1.5⌉) = 2.
    assert window_half_widths(4) == (2,)


def grid10():
    # 10×10 points at 4, 12, …, 76 (stride 8, offset 0.5); prior index 10·row + column.
    return PriorGenerator([8], offset=0.5)([torch.zeros(1, 1, 10, 10)])


def test_far_left_centre_takes_one_column():
    # Centre (−1000, 40): column 0 (x = 4) is 1004 px away, column 1 is 1012. Rows by |dy|:
    # y = 36 and 44 (rows 4, 5) tie at 4 → lower index first; then 28 and 52 (rows 3, 6) at
    # 12: d² = 1004² + 16 = 1008032 < 1004² + 144 = 1008160 < 1012² = 1024144. So k = 3
    # gives rows 4, 5, 3 of column 0: priors 40, 50, 30, in that order.
    p = grid10()
    cand = nearest_candidates(p, p.points, torch.tensor([[[-1000.0, 40.0]]]), torch.ones(1, 1, dtype=torch.bool), 3)
    assert cand[0, :, 0].tolist() == [40, 50, 30]


def dense_reference(priors, centers, topk):
    d = (priors.points[None, :, None, :] - centers[:, None, :, :]).pow(2).sum(-1).sqrt()
    return select_topk_candidates(d, priors.num_per_level, topk)


@pytest.mark.parametrize("topk", [1, 4, 9, 30])
def test_nearest_equals_dense_sort(topk):
    # Centres inside, on grid points, halfway between, just and far outside, beyond float32
    # resolution (1e7 px), and at infinity (x1 + x2 overflows): every path (window,
    # second window, exact) gives the dense stable sort, order included.
    feats = [torch.zeros(1, 1, 20, 24), torch.zeros(1, 1, 10, 12), torch.zeros(1, 1, 5, 6)]
    p = PriorGenerator([8, 16, 32], offset=0.0)(feats)
    g = torch.Generator().manual_seed(topk)
    inside = torch.rand(40, 2, generator=g) * torch.tensor([192.0, 160.0])
    on_points = p.points[torch.randint(0, len(p), (10,), generator=g)]
    halfway = on_points + torch.tensor([4.0, 0.0])
    outside = torch.tensor([[-30.0, 50], [250, -20], [-500, -600], [1e7, 80], [90, -3e6], [float("inf"), 3.0]])
    centers = torch.cat([inside, on_points, halfway, outside])[None]
    active = torch.ones(1, centers.shape[1], dtype=torch.bool)
    cand = nearest_candidates(p, p.points, centers, active, topk)
    assert torch.equal(cand, dense_reference(p, centers, topk))
    # an arbitrary point set (no grid geometry) takes the exact path
    q = Priors(p.points, p.anchors, p.strides, p.levels, p.num_per_level)
    assert torch.equal(nearest_candidates(q, q.points, centers, active, topk), cand)
    assert cand.shape == (1, sum(min(topk, n) for n in p.num_per_level), centers.shape[1])

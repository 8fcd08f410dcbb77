"""Training progress reaches the assigner as an explicit input, set by a hook."""
from types import SimpleNamespace

import pytest
import torch

from dsla_d2.assigners import DynamicATSSAssigner
from dsla_d2.engine import TrainingProgressHook
from dsla_d2.utils.progress import TrainingProgress

from tiny import make_inputs, tiny_fcos


def test_fraction_is_clamped_and_max_iter_checked():
    assert TrainingProgress(250, 1000).fraction == 0.25
    assert TrainingProgress(2000, 1000).fraction == 1.0
    with pytest.raises(ValueError, match="max_iter=0"):
        TrainingProgress(0, 0)


def test_hook_sets_progress_on_the_unwrapped_model():
    model = tiny_fcos()
    hook = TrainingProgressHook()
    hook.trainer = SimpleNamespace(model=SimpleNamespace(module=model), iter=250, max_iter=1000)  # DDP-like wrapper
    hook.before_step()
    assert model.training_progress == TrainingProgress(250, 1000)
    hook.trainer = SimpleNamespace(model=model, iter=251, max_iter=1000)
    hook.before_step()
    assert model.training_progress == TrainingProgress(251, 1000)


def test_model_hands_its_progress_to_the_assigner():
    # D_up at iteration 300 of 1200 is 0.25 and D_down 0.75: the weights the assigner used
    # are recorded in the assignment's extras, captured here.
    assigner = DynamicATSSAssigner(topk=4, anchor_iou_weight="down", pred_iou_weight="up")
    model = tiny_fcos(assigner=assigner)
    seen = []
    assign = assigner.assign
    assigner.assign = lambda *a, **k: seen.append(assign(*a, **k)) or seen[-1]
    model.set_training_progress(300, 1200)
    model.train()
    model(make_inputs([[[4, 4, 40, 40]]]))
    assert seen[-1].extras["iou_weights"].tolist() == [0.75, 0.25]
    assert torch.isfinite(seen[-1].extras["threshold"]).all()

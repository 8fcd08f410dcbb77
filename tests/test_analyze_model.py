"""tools/analyze_model.py: FLOP and parameter counts against counts derived by hand.

fvcore counts one multiply-add as one FLOP; a k×k conv from Cin to Cout channels with an
Ho×Wo output costs Ho·Wo·Cout·Cin·k·k (bias not counted).
"""
import importlib.util
import json
import os

import pytest
import torch
from torch import nn

from tiny import tiny_fcos

from dsla_d2.heads.layers import DeformConv3x3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("analyze_model", os.path.join(ROOT, "tools", "analyze_model.py"))
am = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(am)


def test_conv_flops_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1), nn.Conv2d(4, 6, 3, stride=2, padding=1))
    fa = am.flop_analysis(model, (torch.zeros(1, 3, 16, 16),))
    # conv 3→8, 3×3, 16×16 out: 16·16·8·3·9 = 55296; conv 8→4, 1×1: 16·16·4·8 = 8192;
    # conv 4→6, 3×3 stride 2, 8×8 out: 8·8·6·4·9 = 13824. ReLU is free.
    assert fa.by_module()["0"] == 55296 and fa.by_module()["2"] == 8192 and fa.by_module()["3"] == 13824
    assert fa.total() == 55296 + 8192 + 13824
    # batch of 2: twice as much
    assert am.flop_analysis(model, (torch.zeros(2, 3, 16, 16),)).total() == 2 * 77312


def test_deformable_conv_is_counted_not_dropped():
    x = torch.zeros(1, 4, 8, 8)
    # DCNv1 4→6 on 8×8: offset conv 4→18 (3×3): 8·8·18·4·9 = 41472; the deformable conv
    # itself, as a conv: 8·8·6·4·9 = 13824
    fa = am.flop_analysis(DeformConv3x3(4, 6), (x,))
    assert fa.total() == 41472 + 13824 and not fa.unsupported_ops()
    # DCNv2: offset+mask conv 4→27: 8·8·27·36 = 62208; the mask's sigmoid is reported as not counted
    fa = am.flop_analysis(DeformConv3x3(4, 6, modulated=True), (x,))
    assert fa.total() == 62208 + 13824 and set(fa.unsupported_ops()) == {"aten::sigmoid"}


def test_detector_parts_by_hand():
    # tests/tiny.py: 2-level conv backbone (size divisibility 16), FCOS head with 16
    # channels, one tower conv, 3 classes, no norm. A 60×50 input is padded to 64×64.
    model = tiny_fcos().eval()
    res = am.analyze(model, 60, 50)
    assert res["padded_size"] == [64, 64]
    parts = {r["part"]: (r["params"], r["flops"]) for r in res["parts"]}
    # backbone: 3→16 s2 (32×32 out) 32·32·16·27 = 442368; 16→16 s2 (16×16) 16·16·16·144 = 589824;
    # 16→16 s2 (8×8, p3) 8·8·16·144 = 147456; p4 16→16 s2 (4×4) 4·4·16·144 = 36864.
    # params: 3·16·9+16 = 448, three 16→16 convs 3·(2304+16) = 6960.
    assert parts["backbone"] == (448 + 6960, 442368 + 589824 + 147456 + 36864)
    # head on p3 (8×8) and p4 (4×4): 80 locations. Tower 16→16: 80·16·144 = 184320, params 2320;
    # cls 16→3: 80·3·144 = 34560 (432+3); box 16→4: 46080 (576+4); centerness 16→1: 11520 (144+1)
    assert parts["head.cls_tower"] == parts["head.reg_tower"] == (2320, 184320)
    assert parts["head.cls_logits"] == (435, 34560) and parts["head.box_reg"] == (580, 46080)
    assert parts["head.quality"] == (145, 11520) and parts["head.scales"] == (2, 0)
    assert res["flops"]["total"] == 1216512 + 2 * 184320 + 34560 + 46080 + 11520
    assert res["params"]["total"] == res["params"]["detector"] == sum(p.numel() for p in model.parameters())
    # the per-level Scale (mul) and the exp box activation are reported, not hidden
    assert {"aten::mul", "aten::exp"} <= set(res["not_counted"])


def test_cli_on_a_lazy_config(tmp_path, capsys):
    out = tmp_path / "fcos.json"
    (res,) = am.main(["--config-file", os.path.join(ROOT, "configs", "fcos_r18_synth.py"), "--out-json", str(out), "model.head.num_convs=1"])
    assert res["config"] == "configs/fcos_r18_synth.py" and res["meta_arch"] == "DslaFCOS"
    # default size: the test ResizeShortestEdge (short 192, max 288); FPN divisibility 32 keeps it
    assert res["input_size"] == [192, 288] and res["padded_size"] == [192, 288]
    assert [r["part"] for r in res["parts"]][:2] == ["backbone.bottom_up", "backbone.fpn"]
    assert sum(r["flops"] for r in res["parts"]) == res["flops"]["total"]
    assert sum(r["params"] for r in res["parts"]) == res["params"]["total"]
    saved = json.loads(out.read_text())
    assert saved["results"][0]["flops"]["total"] == res["flops"]["total"] and saved["command"].endswith("model.head.num_convs=1")
    assert "backbone.bottom_up" in capsys.readouterr().out
    with pytest.raises(KeyError, match="Unknown config key 'model.head.num_conv'"):
        am.main(["--config-file", os.path.join(ROOT, "configs", "fcos_r18_synth.py"), "model.head.num_conv=1"])

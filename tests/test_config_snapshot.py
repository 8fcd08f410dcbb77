"""Every config resolves to the values recorded in ``tests/snapshots/configs.json``.

A failure lists each changed key. If the change is intended (a recipe fix, a new config),
rewrite the snapshot with ``python tests/config_snapshot.py --write`` and commit it with the
change, so the diff shows which values moved.
"""
from detectron2.config import LazyCall as L

import config_snapshot
from dsla_d2.heads import DSLAHead, FCOSHead

HOW = "intended? rewrite it with `python tests/config_snapshot.py --write`"


def test_every_config_matches_the_snapshot():
    stored = config_snapshot.load_snapshot()
    assert sorted(stored) == config_snapshot.config_files(), f"configs added or removed: {HOW}"
    lines = config_snapshot.diff(stored, config_snapshot.current())
    assert not lines, "configs differ from the snapshot:\n" + "\n".join(lines) + f"\n{HOW}"


def _values(node):
    return config_snapshot._flatten(config_snapshot._plain(dict(node)), "", {})


def test_effective_values_fill_in_signature_defaults():
    # FCOSHead passes **kwargs on to TowerHead, whose default conv_bias is True and
    # channels 256: leaving them out and writing them out is the same head.
    short = L(FCOSHead)(in_channels=64, num_classes=6, num_levels=5)
    full = L(FCOSHead)(in_channels=64, num_classes=6, num_levels=5, conv_bias=True, channels=256, quality_branch="reg")
    assert _values(short) == _values(full)
    assert _values(short)["conv_bias"] is True and _values(short)["quality_branch"] == "reg"
    # DSLAHead's own default (no quality branch) wins over TowerHead's signature
    assert _values(L(DSLAHead)(in_channels=64, num_classes=6, num_levels=5))["quality_branch"] is None
    # a different value, or the same value with another type, is a change
    changed = L(FCOSHead)(in_channels=64, num_classes=6, num_levels=5, channels=256.0)
    assert config_snapshot.diff({"c": _values(short)}, {"c": _values(changed)}) == ["c: channels 256 -> 256.0"]

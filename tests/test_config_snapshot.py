"""Every lazy config under ``configs/`` and ``projects/*/configs/`` resolves to the values
recorded in ``tests/data/configs.json``.

A config's *effective* values are the resolved keys of its five nodes (``model``,
``dataloader``, ``optimizer``, ``lr_multiplier``, ``train``) (interpolations followed) plus, for every
``LazyCall`` node, the defaults of the called object's signature that the config leaves out
(walking up the base classes' ``__init__`` where a signature passes ``**kwargs`` on). Two
configs with the same effective values build the same objects; restructuring a config (a
shared base, a helper, an explicit default) leaves them unchanged.

The snapshot stores each distinct part (``dataloader``, ``model.head``, ``model.assigner``, …)
once, under an id made of its name and a hash of its values, and each config as the ids of
its parts: one line per part and per config, so a changed value shows as a small diff.

A failure lists each changed key. If the change is intended (a recipe fix, a new config),
rewrite the snapshot and commit it with the change, so the diff shows which values moved::

    python tests/test_config_snapshot.py --write   # after an intended change of config values
    python tests/test_config_snapshot.py          # show what differs from the snapshot
"""
import argparse
import glob
import hashlib
import inspect
import json
import os
import sys

from omegaconf import OmegaConf

import dsla_d2  # noqa: F401  (registers our parts; the configs import them anyway)
from detectron2.config import LazyCall as L
from detectron2.config import LazyConfig

from dsla_d2.heads import DSLAHead, FCOSHead

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SNAPSHOT = os.path.join(ROOT, "tests", "data", "configs.json")
CONFIG_GLOBS = ("configs/**/*.py", "projects/*/configs/**/*.py")
NODES = ("dataloader", "lr_multiplier", "model", "optimizer", "train")


def config_files():
    """Repository-relative paths of every config (building blocks under ``common/`` are not
    configs of their own; the configs that use them cover them)."""
    files = set()
    for pattern in CONFIG_GLOBS:
        for path in glob.glob(os.path.join(ROOT, pattern), recursive=True):
            rel = os.path.relpath(path, ROOT)
            if "common" not in rel.split(os.sep)[:-1]:
                files.add(rel.replace(os.sep, "/"))
    return sorted(files)


def _name(obj):
    return f"{obj.__module__}.{obj.__qualname__}"


def _signature_defaults(target):
    """Keyword defaults of ``target`` (a class or function), following ``**kwargs`` up
    the base classes' ``__init__``."""
    callables = [c.__init__ for c in inspect.getmro(target) if "__init__" in vars(c)] if inspect.isclass(target) else [target]
    defaults = {}
    for fn in callables:
        try:
            params = inspect.signature(fn).parameters.values()
        except (TypeError, ValueError):
            break
        for p in params:
            if p.default is not inspect.Parameter.empty:
                defaults.setdefault(p.name, p.default)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    return defaults


def _plain(value):
    """JSON-able form: callables by name, tuples as lists, LazyCall nodes with defaults."""
    if isinstance(value, dict):
        out = {str(k): _plain(v) for k, v in value.items()}
        target = value.get("_target_")
        if callable(target):
            for k, v in _signature_defaults(target).items():
                out.setdefault(k, _plain(v))
        return out
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if callable(value):
        return _name(value)
    raise TypeError(f"config value {value!r} of type {type(value).__name__} has no snapshot form")


def _flatten(value, prefix, out):
    """Dicts and lists holding dicts become dotted keys; lists of plain values stay values."""
    if isinstance(value, dict):
        for k in sorted(value):
            _flatten(value[k], f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(value, list) and any(isinstance(v, (dict, list)) and _has_dict(v) for v in value):
        for i, v in enumerate(value):
            _flatten(v, f"{prefix}.{i}", out)
    else:
        out[prefix] = value
    return out


def _has_dict(value):
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(_has_dict(v) for v in value)


def effective_values(rel_path):
    """Flat ``{dotted key: value}`` of the config at ``rel_path`` (repository-relative)."""
    cfg = LazyConfig.load(os.path.join(ROOT, rel_path))
    missing = [k for k in NODES if k not in cfg]
    if missing:
        raise KeyError(f"{rel_path} defines no {missing}")
    container = {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k in NODES}
    return _flatten(_plain(container), "", {})


def current():
    return {rel: effective_values(rel) for rel in config_files()}


def _part(key):
    """``model.<child>`` for keys below a child of ``model``, else the top-level node."""
    head = key.split(".")
    return ".".join(head[:2]) if head[0] == "model" and len(head) > 2 else head[0]


def _split(table):
    parts = {}
    for key, value in table.items():
        part = _part(key)
        parts.setdefault(part, {})[key[len(part) + 1 :]] = value
    return parts


def _part_id(part, table):
    digest = hashlib.sha1(json.dumps(table, sort_keys=True).encode()).hexdigest()[:10]
    return f"{part}/{digest}"


def load_snapshot():
    """``{config: {key: value}}`` as stored."""
    with open(SNAPSHOT) as f:
        stored = json.load(f)
    out = {}
    for rel, ids in stored["configs"].items():
        table = {}
        for part, pid in ids.items():
            table.update({f"{part}.{k}" if k else part: v for k, v in stored["parts"][pid].items()})
        out[rel] = table
    return out


def diff(old, new):
    """Lines describing every key that was added, removed or changed, per config."""
    lines = []
    for rel in sorted(set(old) | set(new)):
        if rel not in new:
            lines.append(f"{rel}: config removed")
            continue
        if rel not in old:
            lines.append(f"{rel}: config not in the snapshot")
            continue
        a, b = old[rel], new[rel]
        for key in sorted(set(a) | set(b)):
            if key not in b:
                lines.append(f"{rel}: {key} removed (was {a[key]!r})")
            elif key not in a:
                lines.append(f"{rel}: {key} added = {b[key]!r}")
            elif json.dumps(a[key]) != json.dumps(b[key]):
                lines.append(f"{rel}: {key} {a[key]!r} -> {b[key]!r}")
    return lines


def write(values):
    configs, parts = {}, {}
    for rel, table in values.items():
        ids = {}
        for part, sub in sorted(_split(table).items()):
            ids[part] = pid = _part_id(part, sub)
            parts[pid] = sub
        configs[rel] = ids

    def block(name, mapping, last):
        lines = [f"    {json.dumps(k)}: {json.dumps(v, sort_keys=True)}" for k, v in sorted(mapping.items())]
        return f'  "{name}": {{\n' + ",\n".join(lines) + "\n  }" + ("" if last else ",") + "\n"

    os.makedirs(os.path.dirname(SNAPSHOT), exist_ok=True)
    with open(SNAPSHOT, "w") as f:
        f.write("{\n" + block("configs", configs, False) + block("parts", parts, True) + "}\n")


HOW = "intended? rewrite it with `python tests/test_config_snapshot.py --write`"


def test_every_config_matches_the_snapshot():
    stored = load_snapshot()
    assert sorted(stored) == config_files(), f"configs added or removed: {HOW}"
    lines = diff(stored, current())
    assert not lines, "configs differ from the snapshot:\n" + "\n".join(lines) + f"\n{HOW}"


def _values(node):
    return _flatten(_plain(dict(node)), "", {})


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
    assert diff({"c": _values(short)}, {"c": _values(changed)}) == ["c: channels 256 -> 256.0"]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--write", action="store_true", help="rewrite the snapshot from the configs")
    p.add_argument("--diff", action="store_true", help="print what differs from the snapshot")
    args = p.parse_args(argv)
    values = current()
    if args.write:
        write(values)
        print(f"wrote {len(values)} configs to {os.path.relpath(SNAPSHOT, ROOT)}")
    else:
        lines = diff(load_snapshot(), values)
        print("\n".join(lines) if lines else f"all {len(values)} configs match the snapshot")
        return 1 if lines else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

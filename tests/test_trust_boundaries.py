"""Nothing runs that the user did not ask for: a run directory (config.yaml, last_checkpoint,
checkpoints) is data, never code, whether it is served, resumed or evaluated.

Every payload below writes a marker file if it runs; each test checks that the marker is
absent after the refusal.
"""
import os
import pickle

import pytest
import torch
from detectron2.config import LazyConfig, instantiate
from omegaconf import OmegaConf

import dsla_d2  # noqa: F401  (applies dsla_d2.compat, registers the datasets)
from dsla_d2.engine.checkpoint import CheckpointReadError, RunCheckpointer, load_for_inference, model_description
from dsla_d2.serving import find_weights, lazy_to_yacs, load_yacs_config, predictor_from_config, predictor_from_output_dir
from dsla_d2.utils.trust import UnsafeConfigError, UntrustedTargetError, is_model_part, load_config
from test_train_net import CONFIG, TINY, run

from detectron2.modeling import build_model

CLASSES = ["rectangle", "ellipse", "triangle", "cross", "ring", "star"]


def run_dir(path, opts=()):
    """An output directory as train_net.py leaves it (config.yaml + model_final.pth with
    its checksum), from an untrained model: no training needed to serve it."""
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), [*TINY, f"train.output_dir={path}", *opts])
    os.makedirs(path, exist_ok=True)
    LazyConfig.save(cfg, os.path.join(path, "config.yaml"))
    model = instantiate(cfg.model)
    RunCheckpointer(model, str(path), description=model_description(cfg.model, CLASSES)).save("model_final")
    return cfg


def inject_under_model(config_yaml, line):
    """Add ``line`` as a key of the ``model:`` mapping of a dumped config.yaml."""
    text = config_yaml.read_text()
    assert "\nmodel:\n" in text
    config_yaml.write_text(text.replace("\nmodel:\n", f"\nmodel:\n  {line}\n", 1))


# --------------------------------------------------------------------------- config.yaml
def test_python_tag_in_a_served_config_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    run_dir(tmp_path / "run")
    inject_under_model(tmp_path / "run" / "config.yaml", f'pwn: !!python/object/apply:os.system ["touch {marker}"]')
    with pytest.raises(UnsafeConfigError, match=r"config.yaml: line \d+: the tag !!python/object/apply:os.system"):
        predictor_from_output_dir(str(tmp_path / "run"), device="cpu")
    assert not marker.exists()
    with pytest.raises(UnsafeConfigError):  # the same file named as a config
        predictor_from_config(str(tmp_path / "run" / "config.yaml"), str(tmp_path / "run" / "model_final.pth"))
    assert not marker.exists()


def test_python_tag_in_a_config_given_to_resume_or_eval_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    run_dir(tmp_path / "run")
    config = tmp_path / "run" / "config.yaml"
    inject_under_model(config, f'pwn: !!python/object/apply:os.system ["touch {marker}"]')
    import train_net

    for flags in (["--resume"], ["--eval-only"]):
        args = train_net.get_parser().parse_args(
            ["--config-file", str(config), *flags, f"train.init_checkpoint={tmp_path / 'run' / 'model_final.pth'}"]
        )
        with pytest.raises(UnsafeConfigError):
            train_net.main(args)
        assert not marker.exists()


def test_a_plain_dumped_config_still_loads_as_the_lazy_loader_reads_it(tmp_path):
    cfg = run_dir(tmp_path / "run")
    safe = load_config(str(tmp_path / "run" / "config.yaml"))
    unsafe = LazyConfig.load(str(tmp_path / "run" / "config.yaml"))  # our own file: safe to compare
    assert OmegaConf.to_container(safe) == OmegaConf.to_container(unsafe)
    assert safe.model.num_classes == cfg.model.num_classes


def test_yacs_dump_with_a_python_tag_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    dumped = tmp_path / "yacs.yaml"
    dumped.write_text(lazy_to_yacs(cfg, device="cpu").dump())
    assert load_yacs_config(str(dumped)).MODEL.META_ARCHITECTURE == "DslaFCOS"
    dumped.write_text(dumped.read_text() + f'EVIL: !!python/object/apply:os.system ["touch {marker}"]\n')
    with pytest.raises(UnsafeConfigError, match="YAML tags"):
        load_yacs_config(str(dumped))
    assert not marker.exists()


def test_a_yacs_file_cannot_widen_its_own_trust(tmp_path):
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    ycfg = lazy_to_yacs(cfg, device="cpu")
    ycfg.MODEL.DSLA_D2.ALLOWED_TARGETS = ["subprocess"]
    dumped = tmp_path / "yacs.yaml"
    dumped.write_text(ycfg.dump())
    assert load_yacs_config(str(dumped)).MODEL.DSLA_D2.ALLOWED_TARGETS == []


# --------------------------------------------------------------------------- _target_ allow-list
def payloads(tmp_path, marker):
    """Callables inside torch/detectron2 that run code they are given, each with arguments
    that would create ``marker``."""
    script = tmp_path / "evil_config.py"
    script.write_text(f"import os\nos.system('touch {marker}')\n")
    pickled = tmp_path / "evil.pt"

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(pickled, "wb") as f:
        pickle.dump(Boom(), f)
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "hubconf.py").write_text(f"import os\nos.system('touch {marker}')\ndef model():\n    return None\n")
    return [
        {"_target_": "torch.utils.collect_env.run", "command": f"touch {marker}"},
        {"_target_": "detectron2.config.LazyConfig.load", "filename": str(script)},
        {"_target_": "torch.load", "f": str(pickled), "weights_only": False},
        {"_target_": "torch.hub.load", "repo_or_dir": str(hub), "model": "model", "source": "local"},
    ]


@pytest.mark.parametrize("which", range(4), ids=["collect_env.run", "LazyConfig.load", "torch.load", "torch.hub.load"])
def test_callables_of_trusted_packages_are_not_model_parts(tmp_path, which):
    marker = tmp_path / "pwned"
    payload = payloads(tmp_path, marker)[which]
    assert not is_model_part(payload["_target_"])

    # in a lazy config being served
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    cfg.model.assigner = OmegaConf.create(payload)
    with pytest.raises(UntrustedTargetError, match=payload["_target_"].replace(".", r"\.")):
        lazy_to_yacs(cfg, device="cpu")

    # in a run directory's config.yaml
    run_dir(tmp_path / "run")
    config = tmp_path / "run" / "config.yaml"
    served = OmegaConf.load(config)
    served.model.assigner = OmegaConf.create(payload)
    config.write_text(OmegaConf.to_yaml(served))
    with pytest.raises(UntrustedTargetError):
        predictor_from_output_dir(str(tmp_path / "run"), device="cpu")

    # in a yacs config whose LAZY_MODEL was edited after lazy_to_yacs checked it
    ycfg = lazy_to_yacs(LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY), device="cpu")
    node = OmegaConf.create(ycfg.MODEL.DSLA_D2.LAZY_MODEL)
    node.assigner = OmegaConf.create(payload)
    ycfg.MODEL.DSLA_D2.LAZY_MODEL = OmegaConf.to_yaml(node)
    with pytest.raises(UntrustedTargetError):
        build_model(ycfg)
    assert not marker.exists()


def test_model_parts_of_every_config_are_allowed():
    import glob

    from dsla_d2.utils.trust import find_targets

    root = os.path.dirname(CONFIG)
    files = glob.glob(os.path.join(root, "*.py")) + glob.glob(os.path.join(root, "..", "projects", "*", "configs", "**", "*.py"), recursive=True)
    targets = set()
    for path in files:
        if os.sep + "common" + os.sep in path:
            continue
        targets.update(t for _, t in find_targets(LazyConfig.load(path).model))
    assert len(targets) > 20
    refused = sorted(t for t in targets if not is_model_part(t))
    assert refused == []


def test_allowed_targets_extends_to_modules_and_exact_names():
    # a module name extends the Module rule to that module; an exact name allows one callable
    assert not is_model_part("tiny.TwoLevelBackbone")
    assert is_model_part("tiny.TwoLevelBackbone", ["tiny"])
    assert not is_model_part("tiny.tiny_fcos", ["tiny"])  # a function of an allowed module
    assert is_model_part("tiny.tiny_fcos", ["tiny.tiny_fcos"])
    assert not is_model_part("os.system", ["tiny"])


# --------------------------------------------------------------------------- checkpoints
def evil_pickle(path, marker):
    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    with open(path, "wb") as f:
        pickle.dump({"model": Boom(), "__author__": "x"}, f)


def test_last_checkpoint_to_a_pkl_is_not_followed_when_serving(tmp_path):
    marker = tmp_path / "pwned"
    run_dir(tmp_path / "run")
    os.remove(tmp_path / "run" / "model_final.pth")
    evil_pickle(tmp_path / "run" / "model_0000009.pkl", marker)
    (tmp_path / "run" / "last_checkpoint").write_text("model_0000009.pkl")
    with pytest.raises(CheckpointReadError, match=r"only a \.pth file in the same directory is followed"):
        find_weights(str(tmp_path / "run"))
    with pytest.raises(CheckpointReadError):
        predictor_from_output_dir(str(tmp_path / "run"), device="cpu")
    (tmp_path / "run" / "last_checkpoint").write_text("../elsewhere/model_final.pth")
    with pytest.raises(CheckpointReadError, match="elsewhere"):
        find_weights(str(tmp_path / "run"))
    assert not marker.exists()


def test_last_checkpoint_to_a_pkl_is_not_followed_by_resume(tmp_path, caplog):
    marker = tmp_path / "pwned"
    out = tmp_path / "run"
    out.mkdir()
    evil_pickle(out / "model_0000009.pkl", marker)
    (out / "last_checkpoint").write_text("model_0000009.pkl")
    run(out, "train.max_iter=1", "train.eval_period=0", flags=["--resume"])
    assert not marker.exists()
    assert "only a .pth file in the same directory is followed" in caplog.text


def test_a_pkl_named_explicitly_is_loaded(tmp_path):
    # Detectron2's .pkl weights (ImageNet backbones, model zoo) are loaded when named
    cfg = LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY)
    model = instantiate(cfg.model)
    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    with open(tmp_path / "weights.pkl", "wb") as f:
        pickle.dump({"model": weights, "__author__": "test"}, f)
    other = instantiate(cfg.model)
    load_for_inference(other, str(tmp_path / "weights.pkl"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), other.state_dict().values()))


def test_garbage_pth_is_named_not_a_checkpoint(tmp_path):
    garbage = tmp_path / "model_final.pth"
    garbage.write_bytes(os.urandom(4096))
    model = instantiate(LazyConfig.apply_overrides(LazyConfig.load(CONFIG), TINY).model)
    with pytest.raises(CheckpointReadError) as e:
        load_for_inference(model, str(garbage))
    assert str(garbage) in str(e.value) and "not a readable checkpoint" in str(e.value)
    assert "weights_only" not in str(e.value)


def test_bit_flipped_checkpoint_is_refused_for_serving(tmp_path):
    run_dir(tmp_path / "run")
    path = tmp_path / "run" / "model_final.pth"
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointReadError, match="does not match its checksum"):
        predictor_from_output_dir(str(tmp_path / "run"), device="cpu")


def test_checksum_file_is_sha256sum_compatible(tmp_path):
    import hashlib

    run_dir(tmp_path / "run")
    digest, name = (tmp_path / "run" / "model_final.pth.sha256").read_text().split()
    assert name == "model_final.pth"
    assert digest == hashlib.sha256((tmp_path / "run" / "model_final.pth").read_bytes()).hexdigest()


def test_served_config_without_dsla_d2_is_a_clear_error(tmp_path):
    # config.yaml that is not a mapping: refused by the loader, with the file named
    (tmp_path / "config.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ValueError, match="config.yaml does not hold a config"):
        load_config(str(tmp_path / "config.yaml"))

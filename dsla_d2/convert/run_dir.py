"""A converted detector as a run directory: what ``train_net.py`` leaves behind, so that
``predictor_from_output_dir``, ``demo.py --output-dir``, ``train_net.py --eval-only``
(``train.init_checkpoint=<dir>/model_final.pth``) and fine-tuning accept it unchanged.

``<dir>/config.yaml`` is the lazy config the weights were converted for,
``<dir>/model_final.pth`` (+ ``.sha256``) the weights with the model record of every
dsla_d2 checkpoint (meta-architecture, assigner, class names) and ``converted_from`` (the
source file, its SHA-256, the rules' origin), and ``<dir>/conversion.json`` the same record
for people.
"""
import json
import os
from typing import Dict, List, Optional

import torch
from detectron2.config import LazyConfig

from ..engine.atomic import atomic_open
from ..engine.checkpoint import RunCheckpointer, file_sha256, model_description

__all__ = ["write_run_dir"]


def write_run_dir(cfg, model: torch.nn.Module, state_dict: Dict[str, torch.Tensor], output_dir: str,
                  class_names: Optional[List[str]], source: Dict) -> str:
    """Write ``cfg`` and ``state_dict`` (complete for ``model``, built from ``cfg.model``)
    as a run directory.

    Args:
        source: what the weights were converted from (``path`` at least); its SHA-256 is
            added.
    Returns:
        the path of ``model_final.pth``.
    """
    model.load_state_dict(state_dict, strict=True)
    os.makedirs(output_dir, exist_ok=True)
    cfg.train.output_dir = output_dir
    cfg.train.init_checkpoint = ""
    LazyConfig.save(cfg, os.path.join(output_dir, "config.yaml"))
    record = dict(source)
    if os.path.isfile(record.get("path", "")):
        record["sha256"] = file_sha256(record["path"])
    description = model_description(cfg.model, class_names)
    RunCheckpointer(model, output_dir, description=description).save("model_final", converted_from=record)
    with atomic_open(os.path.join(output_dir, "conversion.json"), "w") as f:
        json.dump({**record, "model": {k: v for k, v in description.items() if k != "config"}}, f, indent=1)
    return os.path.join(output_dir, "model_final.pth")

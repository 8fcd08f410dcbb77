"""The bridge from a yacs ``CfgNode`` (what ``DefaultPredictor`` builds from) back to our
lazy model description.

:func:`dsla_d2.serving.lazy_to_yacs` stores the lazy config's ``model`` node, verbatim as
YAML, in ``cfg.MODEL.DSLA_D2.LAZY_MODEL``; the meta-architectures' ``from_config`` call
:func:`lazy_model_kwargs` to instantiate it back. It lives beside the meta-architectures so
that the model never imports the serving layer. The node's ``_target_``\\ s must be model
parts (:mod:`dsla_d2.utils.trust`: ``nn.Module`` classes of dsla_d2, detectron2, torchvision
and torch, the helpers it lists, or what ``MODEL.DSLA_D2.ALLOWED_TARGETS`` names): a
``config.yaml`` is data, not code to run.
"""
from omegaconf import DictConfig, ListConfig, OmegaConf

from detectron2.config import CfgNode, instantiate

from ..utils.trust import resolved_targets

__all__ = ["lazy_model_kwargs"]


def lazy_model_kwargs(ycfg: CfgNode) -> dict:
    """Constructor arguments of the model described in ``ycfg.MODEL.DSLA_D2.LAZY_MODEL``."""
    try:
        text = ycfg.MODEL.DSLA_D2.LAZY_MODEL
    except AttributeError:
        raise ValueError(
            "This CfgNode does not describe a dsla_d2 model (no MODEL.DSLA_D2.LAZY_MODEL). "
            "Build it with dsla_d2.serving.lazy_to_yacs(lazy_cfg)."
        ) from None
    node = OmegaConf.create(text)  # OmegaConf's YAML loader is a safe loader: plain data
    # a trust boundary: model parts only (the rule of dsla_d2.utils.trust), or those allowed
    node = resolved_targets(node, ycfg.MODEL.DSLA_D2.get("ALLOWED_TARGETS", []), source="MODEL.DSLA_D2.LAZY_MODEL")
    return {k: instantiate(v) if isinstance(v, (DictConfig, ListConfig)) else v for k, v in node.items() if k != "_target_"}

"""Build-time checks that the parts of a dense detector agree with each other.

Parts that disagree would otherwise train (silently wrong, or until inference raises an
IndexError): a head whose class count is not the model's, priors whose strides are not
the strides of the backbone features the head reads.
"""
from typing import List, Sequence

__all__ = ["check_parts_agree"]


def check_parts_agree(backbone, head, head_in_features: Sequence[str], prior_generator, num_classes: int) -> None:
    """Raise ValueError naming both sides if the head's ``num_classes`` differs from the
    model's, or the prior generator's strides differ from the backbone's output strides
    of ``head_in_features`` (same levels, same order)."""
    head_classes = getattr(head, "num_classes", None)
    if head_classes is not None and int(head_classes) != int(num_classes):
        raise ValueError(
            f"head.num_classes={head_classes} but the model's num_classes={num_classes}: the head "
            "would predict another number of classes than the model decodes"
        )
    shapes = backbone.output_shape()
    missing = [f for f in head_in_features if f not in shapes]
    if missing:
        raise ValueError(f"head_in_features {missing} are not backbone outputs (it has {sorted(shapes)})")
    backbone_strides: List[int] = [int(shapes[f].stride) for f in head_in_features]
    prior_strides = [int(s) for s in getattr(prior_generator, "strides", backbone_strides)]
    if prior_strides != backbone_strides:
        raise ValueError(
            f"prior_generator.strides={prior_strides} but the backbone's {list(head_in_features)} have "
            f"strides {backbone_strides}: priors would sit at the wrong places"
        )

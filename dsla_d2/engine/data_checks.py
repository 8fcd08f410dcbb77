"""Train/test datasets and the model checked against each other before the model is built.

* The training and test datasets must have the same class names in the same order
  (contiguous class i must mean the same thing in both); different category *ids* for the
  same names are fine, since each dataset maps its own ids.
* ``model.num_classes`` must be the number of classes of the data.
* A test set without any non-crowd annotation cannot give an AP: :func:`count_annotations`
  counts them so that train_net.py can say so before evaluating.
"""
from typing import List, Optional

from omegaconf import OmegaConf

from detectron2.data import DatasetCatalog, MetadataCatalog

from ..errors import UserInputError

__all__ = ["DatasetMismatchError", "dataset_names", "class_names", "check_datasets_agree", "count_annotations"]


class DatasetMismatchError(UserInputError, ValueError):
    """Datasets (or the model) disagree on the classes."""


class UnknownDatasetError(UserInputError, KeyError):
    """A dataset name that is not registered."""

    def __str__(self):
        return str(self.args[0])


def dataset_names(cfg, split: str) -> List[str]:
    """Dataset names of ``cfg.dataloader.<split>.dataset.names`` ([] if absent)."""
    names = OmegaConf.select(cfg, f"dataloader.{split}.dataset.names", default=None)
    if names is None:
        return []
    return [names] if isinstance(names, str) else [str(n) for n in names]


def _describe(name: str) -> str:
    meta = MetadataCatalog.get(name).as_dict()  # as_dict: lazy metadata stays lazy
    source = meta.get("source_json_file") or meta.get("json_file")
    return f"{name!r} ({source})" if source else repr(name)


def class_names(name: str) -> Optional[List[str]]:
    """``thing_classes`` of a registered dataset, or None if its metadata has none."""
    if name not in DatasetCatalog.list():
        registered = ", ".join(sorted(DatasetCatalog.list()))
        raise UnknownDatasetError(f"Dataset {name!r} is not registered. Registered datasets: {registered}")
    classes = MetadataCatalog.get(name).as_dict().get("thing_classes")
    return None if classes is None else [str(c) for c in classes]


def _first_difference(a: List[str], b: List[str]) -> str:
    if len(a) != len(b):
        return f"{len(a)} vs {len(b)} classes"
    i = next(i for i, (x, y) in enumerate(zip(a, b)) if x != y)
    return f"class {i} is {a[i]!r} vs {b[i]!r}"


def check_datasets_agree(cfg, splits=("train", "test")) -> Optional[List[str]]:
    """Raise :class:`DatasetMismatchError` if the datasets of ``splits``, or the model's
    ``num_classes``, disagree on the classes; return the class names (None if unknown)."""
    named = [(split, n, class_names(n)) for split in splits for n in dataset_names(cfg, split)]
    known = [(split, n, c) for split, n, c in named if c is not None]
    if not known:
        return None
    _, ref_name, ref = known[0]
    for split, name, classes in known[1:]:
        if classes != ref:
            raise DatasetMismatchError(
                f"The {split} dataset {_describe(name)} and the dataset {_describe(ref_name)} have different "
                f"classes ({_first_difference(classes, ref)}): {classes} vs {ref}. A model trained on one "
                "cannot be evaluated on the other."
            )
    num_classes = OmegaConf.select(cfg, "model.num_classes", default=None)
    if num_classes is not None and num_classes != len(ref):
        raise DatasetMismatchError(
            f"model.num_classes={num_classes} but the dataset {_describe(ref_name)} has {len(ref)} classes {ref}"
        )
    return ref


def count_annotations(name: str) -> int:
    """Number of non-crowd annotations in a registered dataset (loads it)."""
    return sum(not a.get("iscrowd", 0) for d in DatasetCatalog.get(name) for a in d.get("annotations", ()))

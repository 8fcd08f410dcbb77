"""TEST-ONLY stand-in for mmcv's compiled ops, so that mmdetection 3.3 imports and runs on CPU
with ``mmcv-lite`` (which ships mmcv's Python code but no ``mmcv._ext``).

Used only by ``tools/parity/make_mmdet_fixtures.py``; import it before anything from mmcv or
mmdet. Nothing in the project (``dsla_d2``, its tests) imports it or depends on mmcv/mmdet.

How it works
------------
Every ``mmcv/ops/*.py`` module loads its kernels with
``ext_loader.load_ext('_ext', [names])``, which imports ``mmcv._ext`` and asserts that each
name exists. This module installs a fake ``mmcv._ext`` in ``sys.modules``: any attribute
lookup returns a stub that raises ``NotImplementedError`` naming the op when *called*, so
``import mmcv.ops`` (and with it ``import mmdet.models``) succeeds, and mmcv's own Python
classes, wrappers and registrations stay exactly as they are. Only two things are routed
to torchvision:

1. ``mmcv._ext.nms`` (the kernel behind ``mmcv.ops.nms`` and ``mmcv.ops.batched_nms``) ->
   ``torchvision.ops.nms``. mmcv's Python ``nms`` (score_threshold / max_num handling, the
   ``(dets with score column, keep)`` return value) and ``batched_nms`` (class offsets
   ``idxs * (boxes.max() + 1)`` below ``split_thr=10000`` boxes, a per-class loop above,
   ``class_agnostic``, ``nms_cfg=None``) are mmcv's own code, unchanged. Faithful because
   mmcv's CPU kernel (``mmcv/ops/csrc/pytorch/cpu/nms.cpp``) and torchvision's compute the
   same thing: sort by score (descending), greedily keep, suppress later boxes with
   ``inter / (area_i + area_j - inter) > iou_threshold`` (strictly greater), areas
   ``(x2 - x1) * (y2 - y1)``, keep indices returned in descending-score order. Only
   ``offset=0`` is routed (mmcv's default; ``offset=1`` raises). One difference: for
   exactly equal scores, torchvision sorts stably, mmcv's kernel uses an unstable sort, so
   exact ties may be visited in another order. We deliberately do NOT call
   ``torchvision.ops.batched_nms``: on CPU it switches to a per-class loop above 1000 boxes,
   where mmcv keeps the coordinate-offset trick up to 10000; both are the same NMS in exact
   arithmetic but can round differently.

2. ``mmcv.ops.deform_conv.deform_conv2d`` (the function ``DeformConv2d.forward`` and
   ``DeformConv2dPack.forward`` call; mmcv's is an autograd Function over
   ``_ext.deform_conv_forward``) -> ``torchvision.ops.deform_conv2d`` (no bias, no mask).
   The classes stay mmcv's: ``MODELS`` (mmengine's registry, where mmcv registers conv
   types) still maps ``'DCN'`` to ``mmcv.ops.DeformConv2dPack``, so parameter names and
   state-dict keys are mmcv's (``<conv>.weight`` (out, in/groups, kh, kw), no bias;
   ``<conv>.conv_offset.weight`` (deform_groups*2*kh*kw, in, kh, kw) and
   ``<conv>.conv_offset.bias``). Faithful because both kernels use the same offset layout
   and sampling: within deformable group g, channel ``2*(i*kw + j)`` is the y (row) offset
   and ``2*(i*kw + j) + 1`` the x (column) offset of kernel tap (i, j) (mmcv's docstring:
   ``[y0, x0, y1, x1, ...]``; ``deformable_im2col_cpu_kernel`` reads ``offset_h`` at
   ``2*(i*kw+j)``, ``offset_w`` at ``+1``), sampled at
   ``(h_out*stride - pad + i*dilation + dy, w_out*stride - pad + j*dilation + dx)`` by
   bilinear interpolation with zeros outside (0 if the point is at or beyond -1 / H, W;
   corners outside the map contribute 0). mmcv itself routes ``'DCN'`` to
   ``torchvision.ops.deform_conv2d`` with the same offsets on MLU devices
   (``DeformConv2dPack_MLU``). Checked numerically against a transcription of mmcv's CPU
   im2col (random offsets incl. integer and out-of-range ones, 2 deformable groups, groups 2,
   stride 2, dilation 2): max abs difference 3e-6 on outputs of order 10 (float32 rounding),
   while swapping dy/dx changes outputs by ~10.

Everything else in ``mmcv._ext`` (``ModulatedDeformConv2d`` / ``'DCNv2'``, RoIAlign, the
CUDA-only sigmoid focal loss, ...) stays a stub. None of the four parity models (FCOS,
ATSS, FoveaBox, DDOD) calls one: DDOD's first tower conv is ``'DCN'`` (v1, no mask);
FCOS would use ``'DCNv2'`` only with ``dcn_on_last_conv=True``; FoveaBox uses
``DeformConv2d`` only with ``with_deform=True`` (both off in the configs); mmdet's
``FocalLoss`` uses its pure-PyTorch version on CPU. If one were reached, it raises.
"""
import sys
import types

import torchvision
from torch.nn.modules.utils import _pair

__all__ = ["install", "deform_conv2d"]

_EXT_NAME = "mmcv._ext"


def _missing(name):
    def op(*args, **kwargs):
        raise NotImplementedError(
            f"mmcv compiled op '{name}' is not available: mmcv-lite has no mmcv._ext and "
            f"tools/parity/mmcv_ops_shim.py routes only 'nms' and 'deform_conv2d' (DCN v1)")

    op.__name__ = name
    return op


def _ext_nms(boxes, scores, iou_threshold, offset=0):
    if int(offset) != 0:
        raise NotImplementedError("mmcv_ops_shim: nms with offset=1 is not routed")
    return torchvision.ops.nms(boxes, scores, float(iou_threshold))


def deform_conv2d(input, offset, weight, stride=1, padding=0, dilation=1, groups=1,
                  deform_groups=1, bias=False, im2col_step=32):
    """mmcv.ops.deform_conv2d's signature, computed by torchvision.ops.deform_conv2d."""
    if input is not None and input.dim() != 4:
        raise ValueError(f"Expected 4D tensor as input, got {input.dim()}D tensor instead.")
    assert bias is False, "Only support bias is False."
    kh, kw = weight.shape[-2:]
    # torchvision infers groups and deformable groups from the shapes: check they are mmcv's.
    assert input.size(1) == weight.size(1) * groups, (input.shape, weight.shape, groups)
    assert offset.size(1) == 2 * deform_groups * kh * kw, (offset.shape, deform_groups)
    input = input.type_as(offset)  # as mmcv's DeformConv2dFunction.forward
    weight = weight.type_as(input)
    return torchvision.ops.deform_conv2d(input, offset, weight, None, stride=_pair(stride),
                                         padding=_pair(padding), dilation=_pair(dilation))


def install():
    """Install the fake ``mmcv._ext`` and route nms / deform_conv2d. Idempotent."""
    if "mmcv.ops" in sys.modules and _EXT_NAME not in sys.modules:
        raise RuntimeError("mmcv_ops_shim must be imported before mmcv.ops / mmdet")
    if _EXT_NAME not in sys.modules:
        ext = types.ModuleType(_EXT_NAME, "Fake mmcv._ext from tools/parity/mmcv_ops_shim.py")
        ext.nms = _ext_nms

        def __getattr__(name):
            if name.startswith("__"):
                raise AttributeError(name)
            stub = _missing(name)
            setattr(ext, name, stub)
            return stub

        ext.__getattr__ = __getattr__
        sys.modules[_EXT_NAME] = ext

    import mmcv.ops
    import mmcv.ops.deform_conv as dc
    from mmengine.registry import MODELS

    dc.deform_conv2d = deform_conv2d  # the global DeformConv2d(Pack).forward calls
    mmcv.ops.deform_conv2d = deform_conv2d  # the public functional name
    assert MODELS.get("DCN") is mmcv.ops.DeformConv2dPack, MODELS.get("DCN")


install()

#!/usr/bin/env python
"""Draw a trained detector's predictions with Detectron2's Visualizer.

    python demo.py --output-dir output/fcos_synth --input photos/ 'shots/*.jpg' clip.mp4 --output annotated/
    python demo.py --output-dir output/fcos_synth --input img1.jpg img2.jpg --out preds.png
    python demo.py --output-dir output/fcos_synth --dataset dsla_synth_val --num-images 6 --out preds.png
    python demo.py --config-file configs/fcos_r18_synth.py --weights model.pth --webcam 0 --output rec/

The model is served by Detectron2's ``DefaultPredictor`` built from the training run's own
config (``dsla_d2.predictor_from_output_dir``). ``--input`` takes image files, folders (their
images; not descended), globs (expanded here, so they may be quoted) and video files
(``cv2.VideoCapture``). ``--output DIR`` gets one annotated file per input (videos through
``cv2.VideoWriter``, mp4v); ``--out FILE.png`` tiles the images into one PNG; ``--json FILE``
gets the detections as COCO-style results. See docs/demo.md.

Images are read by ``dsla_d2.data.read_image`` (Detectron2's reader, with 16-bit images
scaled onto 0..255). Every input is found and checked (images' headers, videos' first frame)
before the model is built; an input that is missing or unreadable is reported in one line
(exit status 2).
"""
import argparse
import collections
import glob
import json
import os
import sys
import tempfile

from dsla_d2.errors import UsageError, UserInputError, debug_requested, run_cli

if not debug_requested():  # FFmpeg's own messages ("moov atom not found") would precede our one-line error
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # read when OpenCV first opens a video

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402  (a dependency of iopath/fvcore)

import dsla_d2  # noqa: E402
from detectron2.data import DatasetCatalog, MetadataCatalog  # noqa: E402
from detectron2.data.catalog import Metadata  # noqa: E402
from detectron2.utils.video_visualizer import VideoVisualizer  # noqa: E402
from detectron2.utils.visualizer import Visualizer  # noqa: E402
from dsla_d2.data import read_image_checked  # noqa: E402
from dsla_d2.data.image_io import UnsupportedImageError, unsupported_mode  # noqa: E402

if not debug_requested():  # nor OpenCV's warnings ("can't open camera by index")
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:  # an OpenCV without the logging utilities
        pass

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
#: (fourcc, extension) for the annotated videos, in order of preference (the first this
#: OpenCV build can write is used; see :func:`video_format`).
VIDEO_FORMATS = (("mp4v", ".mp4"), ("MJPG", ".avi"))
WINDOW = "dsla_d2 demo"

#: One input: ``kind`` "image", "video" or "webcam"; ``path`` a file (the index for a
#: webcam); ``image_id`` the dataset's id for --dataset images, else None.
Source = collections.namedtuple("Source", "kind path image_id", defaults=(None,))


class VideoReadError(UserInputError):
    """A video file (or webcam) that OpenCV cannot open or read a frame of."""


class OutputWriteError(UserInputError):
    """An annotated image or video that cannot be written where --output says."""


def get_parser():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--output-dir", help="a train_net.py output directory (config.yaml + checkpoint) to serve")
    model.add_argument("--config-file", help="a lazy config (with --weights)")
    parser.add_argument("--weights", help="checkpoint for --config-file")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--input", nargs="+", action="extend", metavar="PATH",
                     help="image files, folders (their images, not descended), globs (quoted or not) and video files")
    src.add_argument("--dataset", help="draw the first --num-images images of this registered dataset")
    src.add_argument("--webcam", type=int, metavar="INDEX",
                     help="read frames from this camera (cv2.VideoCapture(INDEX))")
    parser.add_argument("--num-images", type=int, default=4, help="with --dataset (default 4)")
    parser.add_argument("--confidence-threshold", "--score-thresh", dest="confidence_threshold", type=float,
                        default=0.3,
                        metavar="T", help="draw and report detections scoring above T (default 0.3)")
    parser.add_argument("--output", metavar="DIR", help="write one annotated image or video per input into DIR")
    parser.add_argument("--out", metavar="FILE.png", help="tile the annotated images into this one PNG")
    parser.add_argument("--json", metavar="FILE", help="write the detections as COCO-style results")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda, cuda:1... (default: the run's train.device if it exists here)")
    parser.add_argument("--debug", action="store_true",
                        help="print the traceback of a refused input too (also: DSLA_D2_DEBUG=1)")
    return parser


# ------------------------------------------------------------------------------ inputs
def _kind(path):
    ext = os.path.splitext(path)[1].lower()
    return "video" if ext in VIDEO_EXTENSIONS else "image" if ext in IMAGE_EXTENSIONS else None


def _has_magic(path):
    return any(c in path for c in "*?[")


def _report_skipped(where, skipped, log):
    if not skipped:
        return
    shown = ", ".join(skipped[:10]) + (f", and {len(skipped) - 10} more" if len(skipped) > 10 else "")
    log(f"demo.py: {where}: skipped {len(skipped)}: {shown}")


def _folder(folder, log):
    """The images of ``folder`` (sorted by name); the rest is reported as skipped."""
    found, skipped = [], []
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        kind = _kind(name)
        if os.path.isdir(path):
            example = os.path.join(folder, "**", "*.jpg")
            skipped.append(f"{name}/ (a folder: not descended; use a glob such as '{example}')")
        elif kind == "image":
            found.append(Source("image", path))
        elif kind == "video":
            skipped.append(f"{name} (a video: folders give their images; name it or use a glob)")
        else:
            skipped.append(f"{name} (not a {'/'.join(e[1:] for e in IMAGE_EXTENSIONS)} image)")
    _report_skipped(folder, skipped, log)
    if not found:
        raise UsageError(f"no images in folder {folder} (looked for {', '.join(IMAGE_EXTENSIONS)}, any case)")
    return found


def _glob(pattern, log):
    """The images and videos ``pattern`` matches (sorted; ``**`` descends)."""
    matches = sorted(glob.glob(pattern, recursive=True))
    if not matches:
        raise UsageError(f"input not found: {pattern} (a glob that matches nothing)")
    found, skipped = [], []
    for path in matches:
        kind = None if os.path.isdir(path) else _kind(path)
        if kind:
            found.append(Source(kind, path))
        else:
            why = "/ (a folder)" if os.path.isdir(path) else " (not an image or video)"
            skipped.append(os.path.basename(path) + why)
    _report_skipped(pattern, skipped, log)
    if not found:
        raise UsageError(f"no images or videos match {pattern}")
    return found


def collect_inputs(specs, log=None):
    """The :class:`Source`\\ s of the ``--input`` arguments, in order, each file once: a file
    (a video by its extension, else an image), a folder (its images, sorted), or a glob
    (expanded here: a quoted glob reaches the program unexpanded). A path that is none of
    these raises UsageError; skipped folder entries are reported through ``log``."""
    log = log or (lambda message: print(message, file=sys.stderr))
    sources, seen = [], set()
    for spec in specs:
        path = os.path.expanduser(spec)
        if os.path.isdir(path):
            found = _folder(path, log)
        elif os.path.isfile(path):
            found = [Source(_kind(path) or "image", path)]  # an image by any name: PIL decides
        elif _has_magic(path):
            found = _glob(path, log)
        else:
            raise UsageError(f"input not found: {spec}")
        for source in found:
            key = os.path.realpath(source.path)
            if key in seen:
                log(f"demo.py: {source.path}: given twice, drawn once")
                continue
            seen.add(key)
            sources.append(source)
    return sources


def read_inputs(paths):
    """[(path, BGR uint8 image)] of ``paths``; ImageReadError names an unreadable file."""
    for path in paths:
        if not os.path.isfile(path):
            raise UsageError(f"image not found: {path}")
    return [(path, read_image_checked(path, "BGR")) for path in paths]


def _image_header(file_name, format=None):
    """Open ``file_name`` as PIL does, without decoding the pixels (a quick check)."""
    with open(file_name, "rb") as f:
        mode = Image.open(f).mode
    reason = unsupported_mode(mode)
    if reason:
        raise UnsupportedImageError(f"{file_name}: cannot read {reason}", reason)


def check_images(paths):
    """ImageReadError (one line, naming the file) for a path PIL cannot identify as an image."""
    for path in paths:
        read_image_checked(path, None, reader=_image_header)


def open_video(source):
    """``cv2.VideoCapture`` of a video file or webcam :class:`Source`, opened; VideoReadError
    if OpenCV cannot open it."""
    if source.kind == "webcam":
        cap = cv2.VideoCapture(int(source.path))
        if not cap.isOpened():
            raise VideoReadError(f"cannot open webcam {source.path} "
                                 f"(cv2.VideoCapture({source.path}) failed: no such camera, or it is busy)")
        return cap
    cap = cv2.VideoCapture(source.path)
    if not cap.isOpened():
        raise VideoReadError(f"cannot read video file '{source.path}': OpenCV cannot open it "
                             "(corrupt, not a video, or a codec this OpenCV build lacks)")
    return cap


def check_videos(sources):
    """VideoReadError naming the first video file OpenCV cannot open or read a frame of (a
    webcam: that cannot be opened)."""
    for source in sources:
        cap = open_video(source)
        try:
            ok = source.kind == "webcam" or cap.read()[0]
        finally:
            cap.release()
        if not ok:
            raise VideoReadError(f"cannot read video file '{source.path}': OpenCV opens it but reads no frame")


# ------------------------------------------------------------------------------ outputs
def video_format(directory):
    """(fourcc, extension) of the first of :data:`VIDEO_FORMATS` that this OpenCV can write
    (tried on a tiny file in ``directory``); OutputWriteError if none."""
    for fourcc, ext in VIDEO_FORMATS:
        with tempfile.TemporaryDirectory(dir=directory) as tmp:
            path = os.path.join(tmp, "probe" + ext)
            writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), 10.0, (16, 16))
            ok = writer.isOpened()
            if ok:
                writer.write(np.zeros((16, 16, 3), np.uint8))
            writer.release()
            if ok and os.path.getsize(path) > 0:
                if (fourcc, ext) != VIDEO_FORMATS[0]:
                    print(f"demo.py: this OpenCV cannot write {VIDEO_FORMATS[0][0]} {VIDEO_FORMATS[0][1]} videos: "
                          f"writing {fourcc} {ext} instead", file=sys.stderr)
                return fourcc, ext
    raise OutputWriteError(f"this OpenCV build can write none of {', '.join(f'{c} {e}' for c, e in VIDEO_FORMATS)} "
                           "videos (is it built with FFmpeg?)")


def output_names(sources, directory, video_ext=".mp4"):
    """{source path: output path in ``directory``}: an image keeps its file name (its
    extension too when OpenCV writes it, else ``.png``), a video its name with
    ``video_ext``, a webcam ``webcam<INDEX>``; a name already taken in this run (the same
    name in two folders) gets ``-2``, ``-3``... before its extension. UsageError if an
    output would overwrite its own input."""
    taken, names = set(), {}
    for source in sources:
        if source.kind == "webcam":
            stem, ext = f"webcam{source.path}", video_ext
        else:
            stem, ext = os.path.splitext(os.path.basename(source.path))
            ext = video_ext if source.kind == "video" else ext if ext.lower() in IMAGE_EXTENSIONS else ".png"
        name, k = stem + ext, 1
        while name.lower() in taken:  # lower: case-insensitive file systems
            k += 1
            name = f"{stem}-{k}{ext}"
        taken.add(name.lower())
        path = os.path.join(directory, name)
        if source.kind != "webcam" and os.path.exists(path) and os.path.samefile(path, source.path):
            raise UsageError(f"--output {directory} would overwrite the input {source.path}: write elsewhere")
        names[source.path] = path
    return names


def tile(images, cols=3):
    h = max(i.shape[0] for i in images)
    w = max(i.shape[1] for i in images)
    rows = (len(images) + cols - 1) // cols
    canvas = np.full((rows * h, min(cols, len(images)) * w, 3), 255, dtype=np.uint8)
    for k, img in enumerate(images):
        r, c = divmod(k, cols)
        canvas[r * h : r * h + img.shape[0], c * w : c * w + img.shape[1]] = img
    return canvas


def write_image(path, rgb):
    if not cv2.imwrite(path, np.ascontiguousarray(rgb[:, :, ::-1])):
        raise OutputWriteError(f"cannot write {path}")


def coco_results(instances, image_id, file_name, metadata, frame=None):
    """COCO-style result dicts of ``instances`` (bbox ``[x, y, w, h]`` in input pixels;
    ``category_id`` the dataset's id when the metadata maps it, else the model's class
    index; plus ``file_name``, ``category_name`` and, for a video frame, ``frame``)."""
    to_dataset = {v: k for k, v in (metadata.get("thing_dataset_id_to_contiguous_id", None) or {}).items()}
    names = metadata.get("thing_classes", None) or []
    results = []
    boxes, classes = instances.pred_boxes.tensor.tolist(), instances.pred_classes.tolist()
    for (x0, y0, x1, y1), score, cls in zip(boxes, instances.scores.tolist(), classes):
        result = {"image_id": image_id, "file_name": file_name}
        if frame is not None:
            result["frame"] = frame
        result.update(category_id=int(to_dataset.get(cls, cls)),
                      category_name=names[cls] if cls < len(names) else str(cls),
                      bbox=[x0, y0, x1 - x0, y1 - y0], score=score)
        results.append(result)
    return results


# ------------------------------------------------------------------------------ drawing
class Demo:
    """Runs ``predictor`` on images and videos, drawing with Detectron2's (Video)Visualizer.

    ``output``: a folder for the annotated files (or None), ``names`` their paths
    (:func:`output_names`); ``keep_drawn``: keep the annotated images for :func:`tile`.
    Without either, nothing is drawn (``--json`` alone). The detections above ``threshold``
    are collected in ``results`` (COCO-style, :func:`coco_results`)."""

    def __init__(self, predictor, metadata, threshold, output=None, names=None, video_fourcc="mp4v", keep_drawn=False):
        self.predictor, self.metadata, self.threshold = predictor, metadata, threshold
        self.output, self.names, self.video_fourcc = output, names or {}, video_fourcc
        self.keep_drawn, self.draw = keep_drawn, keep_drawn or output is not None
        self.drawn, self.results = [], []
        self._next_id = 1

    def _image_id(self, given=None):
        if given is not None:
            return given
        self._next_id += 1
        return self._next_id - 1

    def detect(self, bgr):
        instances = self.predictor(bgr)["instances"].to("cpu")
        return instances[instances.scores > self.threshold]

    def images(self, sources, preloaded=None):
        """Draw every image :class:`Source` (read now unless in ``preloaded``, {path: BGR})."""
        preloaded = preloaded or {}
        bar = tqdm(sources, desc="images", unit="img", file=sys.stderr, dynamic_ncols=True,
                   disable=None if len(sources) > 1 else True)  # None: on a terminal only
        for source in bar:
            image = preloaded[source.path] if source.path in preloaded else read_image_checked(source.path, "BGR")
            instances = self.detect(image)
            self.results += coco_results(instances, self._image_id(source.image_id), source.path, self.metadata)
            if self.draw:
                visualizer = Visualizer(image[:, :, ::-1], metadata=self.metadata)
                drawn = visualizer.draw_instance_predictions(instances).get_image()
                if self.output is not None:
                    write_image(self.names[source.path], drawn)
                if self.keep_drawn:
                    self.drawn.append(drawn)
            bar.write(f"{source.path}: {len(instances)} detections above {self.threshold}", file=sys.stdout)

    def video(self, source, show=False):
        """Draw every frame of a video file or webcam :class:`Source` with VideoVisualizer,
        writing them (same size and frame rate) to its output name when there is an
        output folder, showing them in a window when ``show`` (stop with 'q'). A webcam
        also stops on Ctrl-C. Returns the number of frames drawn."""
        cap = open_video(source)
        fps = cap.get(cv2.CAP_PROP_FPS)
        if not fps or not np.isfinite(fps) or fps <= 0:
            print(f"demo.py: {source.path}: no frame rate reported: writing at 30 fps", file=sys.stderr)
            fps = 30.0
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if source.kind == "video" else 0
        out_path = self.names.get(source.path) if self.output is not None else None
        visualizer = VideoVisualizer(self.metadata)
        writer, frames, detections = None, 0, 0
        label = f"webcam {source.path}" if source.kind == "webcam" else os.path.basename(source.path)
        name = f"webcam{source.path}" if source.kind == "webcam" else source.path  # file_name in the results
        bar = tqdm(total=total or None, desc=label, unit="frame", file=sys.stderr, disable=None, dynamic_ncols=True)
        try:
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                instances = self.detect(frame)
                detections += len(instances)
                self.results += coco_results(instances, self._image_id(), name, self.metadata, frame=frames)
                frames += 1
                bar.update(1)
                if out_path is not None or show:
                    drawn = visualizer.draw_instance_predictions(frame[:, :, ::-1], instances).get_image()[:, :, ::-1]
                    drawn = np.ascontiguousarray(drawn)
                    if out_path is not None:
                        if writer is None:
                            h, w = frame.shape[:2]
                            writer = cv2.VideoWriter(out_path, cv2.VideoWriter_fourcc(*self.video_fourcc), fps, (w, h))
                            if not writer.isOpened():
                                raise OutputWriteError(f"cannot write {out_path} ({self.video_fourcc})")
                        writer.write(drawn)
                    if show:
                        cv2.imshow(WINDOW, drawn)
                        if cv2.waitKey(1) & 0xFF == ord("q"):
                            break
        except KeyboardInterrupt:
            if source.kind != "webcam":
                raise
            print("demo.py: stopped (Ctrl-C)", file=sys.stderr)
        finally:
            bar.close()
            cap.release()
            if writer is not None:
                writer.release()
            if show:
                cv2.destroyWindow(WINDOW)
        where = f": wrote {out_path}" if writer is not None else ""
        what = source.path if source.kind == "video" else label
        print(f"{what}: {frames} frames, {detections} detections above {self.threshold}{where}")
        return frames


def display_available():
    """Whether OpenCV can open a window here (a GUI build and, on Linux, a display)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow(WINDOW)
        cv2.destroyWindow(WINDOW)
        return True
    except cv2.error:  # opencv-python-headless
        return False


def _metadata(predictor):
    return getattr(predictor, "metadata", None) or Metadata(name="__demo__")


def _check_dataset(name):
    if name not in DatasetCatalog.list():
        builtin = ("coco_", "keypoints_", "lvis_", "cityscapes_", "voc_", "ade20k_")
        known = ", ".join(sorted(n for n in DatasetCatalog.list() if not n.startswith(builtin)))
        raise UsageError(f"dataset {name!r} is not registered (here: {known}; and Detectron2's builtin ones)")


def main(args):
    if args.input is None and args.dataset is None and args.webcam is None:
        raise UsageError("give --input, --dataset or --webcam")
    if args.config_file and not args.weights:
        raise UsageError("--config-file needs --weights")
    show = args.webcam is not None and display_available()
    if args.webcam is not None and not (args.output or args.json or show):
        raise UsageError("no display to show the webcam in: give --output DIR to record it (or --json FILE)")
    if not (args.output or args.out or args.json or show):
        raise UsageError("give --output DIR (annotated files), --out FILE.png (one tiled image) or --json FILE")

    # every input found and checked before the (slow) model
    sources = collect_inputs(args.input) if args.input else []
    if args.webcam is not None:
        sources = [Source("webcam", str(args.webcam))]
    images = [s for s in sources if s.kind == "image"]
    videos = [s for s in sources if s.kind in ("video", "webcam")]
    if args.out and not args.dataset and not images:
        hint = ": videos are written to --output DIR" if videos else ""
        raise UsageError(f"--out tiles images, and the inputs hold none{hint}")
    if videos and not (args.output or args.json or show):
        raise UsageError(f"videos are written to --output DIR (--out tiles images only): give one for {videos[0].path}")
    if args.output and os.path.exists(args.output) and not os.path.isdir(args.output):
        raise UsageError(f"--output {args.output} is a file; it names a folder")
    preloaded = dict(read_inputs([s.path for s in images])) if args.out else {}  # tiled: all of them in memory anyway
    if not args.out:
        check_images([s.path for s in images])
    check_videos(videos)
    fourcc, video_ext = VIDEO_FORMATS[0]
    names = {}
    if args.output:
        names = output_names(images + videos, args.output, video_ext)  # refuses to overwrite an input
        os.makedirs(args.output, exist_ok=True)
        if videos:
            fourcc, video_ext = video_format(args.output)
            names = output_names(images + videos, args.output, video_ext)

    if args.output_dir:
        predictor = dsla_d2.predictor_from_output_dir(args.output_dir, device=args.device)
    else:
        predictor = dsla_d2.predictor_from_config(args.config_file, args.weights, device=args.device)
    metadata = _metadata(predictor)
    if args.dataset:
        _check_dataset(args.dataset)
        dicts = DatasetCatalog.get(args.dataset)[: args.num_images]
        images = [Source("image", d["file_name"], d.get("image_id")) for d in dicts]
        preloaded = dict(read_inputs([s.path for s in images])) if args.out else {}
        metadata = MetadataCatalog.get(args.dataset)
        names = output_names(images, args.output) if args.output else {}

    demo = Demo(predictor, metadata, args.confidence_threshold, output=args.output, names=names,
                video_fourcc=fourcc, keep_drawn=bool(args.out))
    demo.images(images, preloaded)
    for source in videos:
        demo.video(source, show=show)
    if args.output and images:
        print(f"wrote {len(images)} annotated image(s) to {args.output}")
    if args.out:
        if not demo.drawn:
            raise UsageError(f"no images to tile into {args.out}")
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        write_image(args.out, tile(demo.drawn))
        print(f"wrote {args.out}")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(demo.results, f)
        print(f"wrote {len(demo.results)} detections to {args.json}")
    return demo


if __name__ == "__main__":
    args = get_parser().parse_args()
    run_cli(lambda: main(args), "demo.py", debug=args.debug or debug_requested())

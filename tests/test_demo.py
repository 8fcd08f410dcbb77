"""demo.py: folders, globs, videos and a webcam as inputs; annotated files per input
(--output), the tiled PNG (--out) and COCO-style detections (--json); one-line errors.

The model is an untrained one served from a run directory as train_net.py leaves it
(test_trust_boundaries.run_dir), with its box regression set to a constant so that every
image has detections (random weights give boxes outside the image, dropped as empty).
"""
import collections
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from detectron2.config import instantiate

from dsla_d2.data import ImageReadError, synthetic_split_paths
from dsla_d2.engine.checkpoint import RunCheckpointer, model_description
from dsla_d2.errors import UsageError, run_cli
from test_trust_boundaries import CLASSES, run_dir

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import demo  # noqa: E402

FRAMES, H, W, FPS = 10, 96, 128, 12.0
MAX_DETS = 3


def write_video(path_stem, frames):
    """``frames`` written as mp4v .mp4, or MJPG .avi where this OpenCV cannot write mp4."""
    for fourcc, ext in (("mp4v", ".mp4"), ("MJPG", ".avi")):
        writer = cv2.VideoWriter(str(path_stem) + ext, cv2.VideoWriter_fourcc(*fourcc), FPS, (W, H))
        if writer.isOpened():
            for frame in frames:
                writer.write(frame)
            writer.release()
            return str(path_stem) + ext
    pytest.skip("this OpenCV writes neither mp4v nor MJPG")


def video_facts(path):
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    n = 0
    while cap.read()[0]:
        n += 1
    w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    facts = n, w, h, cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return facts


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A servable run directory whose model predicts a fixed-size box everywhere."""
    path = tmp_path_factory.mktemp("run")
    torch.manual_seed(0)
    cfg = run_dir(path, [f"model.max_detections_per_image={MAX_DETS}"])
    model = instantiate(cfg.model)
    with torch.no_grad():
        model.head.box_reg.weight.zero_()
        model.head.box_reg.bias.fill_(1.0)
    RunCheckpointer(model, str(path), description=model_description(cfg.model, CLASSES)).save("model_final")
    return str(path)


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """imgs/ (3 images, a text file, a subfolder with an image), imgs2/a.png (a name that
    collides with imgs/a.png), a 10-frame video and a corrupt one."""
    root = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    noise = lambda h=H, w=W: (rng.random((h, w, 3)) * 255).astype(np.uint8)  # noqa: E731
    (root / "imgs" / "sub").mkdir(parents=True)
    (root / "imgs2").mkdir()
    for name in ("c.jpeg", "a.png", "b.JPG"):
        cv2.imwrite(str(root / "imgs" / name), noise())
    cv2.imwrite(str(root / "imgs" / "sub" / "d.png"), noise())
    (root / "imgs" / "notes.txt").write_text("not an image")
    cv2.imwrite(str(root / "imgs2" / "a.png"), noise(80, 100))
    video = write_video(root / "clip", [noise() for _ in range(FRAMES)])
    (root / "broken.mp4").write_bytes(os.urandom(3000))
    return root, video


def args_of(*argv):
    return demo.get_parser().parse_args(list(argv))


# ------------------------------------------------------------------------------ the CLI
def test_cli_folders_glob_and_video_to_output_dir_and_json(run, media, tmp_path):
    root, video = media
    out, results = tmp_path / "out", tmp_path / "det.json"
    glob_ = str(root / "cl*")  # quoted: reaches demo.py unexpanded
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "demo.py"), "--output-dir", run, "--device", "cpu",
         "--input", str(root / "imgs"), str(root / "imgs2"), glob_, "--output", str(out), "--json", str(results),
         "--confidence-threshold", "0"],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "notes.txt (not a" in proc.stderr and "sub/ (a folder" in proc.stderr
    video_name = "clip" + os.path.splitext(video)[1].replace(".avi", ".mp4")  # written as mp4v .mp4 here
    assert sorted(os.listdir(out)) == sorted(["a.png", "a-2.png", "b.JPG", "c.jpeg", video_name])
    assert cv2.imread(str(out / "a-2.png")).shape == (80, 100, 3)  # imgs2/a.png, not overwriting imgs/a.png
    assert cv2.imread(str(out / "b.JPG")).shape == (H, W, 3)

    assert video_facts(out / video_name) == (FRAMES, W, H, FPS)  # same frame count, size and rate

    det = json.loads(results.read_text())
    by_file = collections.defaultdict(list)
    for d in det:
        by_file[d["file_name"]].append(d)
        x, y, w, h = d["bbox"]
        assert w > 0 and h > 0 and 0 <= x and x + w <= W + 1e-3 and 0 <= y
        assert d["category_name"] == CLASSES[d["category_id"] - 1]  # the synthetic dataset's ids are 1-based
        assert d["score"] > 0
    images = [str(root / "imgs" / n) for n in ("a.png", "b.JPG", "c.jpeg")] + [str(root / "imgs2" / "a.png")]
    assert set(by_file) == {*images, video}
    assert [d["image_id"] for d in det if "frame" not in d] == sorted(d["image_id"] for d in det if "frame" not in d)
    frames = collections.Counter(d["frame"] for d in by_file[video])
    assert sorted(frames) == list(range(FRAMES)) and set(frames.values()) == {MAX_DETS}
    ids = {d["frame"]: d["image_id"] for d in by_file[video]}
    assert len(set(ids.values())) == FRAMES and not set(ids.values()) & {d["image_id"] for d in det if "frame" not in d}


def test_cli_unreadable_video_is_a_one_line_error(media, tmp_path):
    root, _ = media
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "demo.py"),
         "--config-file", os.path.join(ROOT, "configs", "fcos_r18_synth.py"),
         "--weights", str(tmp_path / "never_read.pth"),
         "--input", str(root / "broken.mp4"), "--output", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "Warning" not in line and "warnings.warn" not in line]
    expected = (f"demo.py: error: cannot read video file '{root / 'broken.mp4'}': OpenCV cannot open it "
                "(corrupt, not a video, or a codec this OpenCV build lacks)")
    assert lines == [expected], proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written, not even the folder


# ------------------------------------------------------------------------------ inputs
def test_a_folder_gives_its_images_sorted_and_says_what_it_skipped(media):
    root, _ = media
    (root / "imgs" / "clip2.MP4").write_bytes(b"")  # a video in a folder: skipped, said so
    try:
        log = []
        sources = demo.collect_inputs([str(root / "imgs")], log=log.append)
    finally:
        (root / "imgs" / "clip2.MP4").unlink()
    assert [os.path.basename(s.path) for s in sources] == ["a.png", "b.JPG", "c.jpeg"]
    assert {s.kind for s in sources} == {"image"}
    [line] = log
    assert line.startswith(f"demo.py: {root / 'imgs'}: skipped 3: ")
    assert "clip2.MP4 (a video" in line and "sub/ (a folder" in line
    assert "notes.txt (not a jpg/jpeg/png/bmp/tif/tiff/webp image)" in line


def test_globs_are_expanded_by_the_demo_itself(media):
    root, video = media
    log = []
    sources = demo.collect_inputs([str(root / "imgs" / "*"), str(root / "**" / "*.png"), video], log=log.append)
    paths = [s.path for s in sources]
    assert paths == [str(root / "imgs" / n) for n in ("a.png", "b.JPG", "c.jpeg")] + [
        str(root / "imgs" / "sub" / "d.png"), str(root / "imgs2" / "a.png"), video]  # each file once, in order
    assert [s.kind for s in sources][-1] == "video"
    assert log[0] == f"demo.py: {root / 'imgs' / '*'}: skipped 2: notes.txt (not an image or video), sub/ (a folder)"
    assert sum("given twice" in line for line in log) == 1  # imgs/a.png matched by both globs
    assert demo.collect_inputs([str(root / "cl*")], log=log.append) == [demo.Source("video", video)]


@pytest.mark.parametrize("spec, message", [
    ("nope.jpg", "input not found: {root}/nope.jpg"),
    ("*.gif", "input not found: {root}/*.gif (a glob that matches nothing)"),
    ("imgs/n*", "no images or videos match {root}/imgs/n*"),
    ("imgs/sub/..", None),  # a folder, fine
])
def test_missing_inputs_are_refused_before_the_model(media, spec, message):
    root, _ = media
    if message is None:
        assert len(demo.collect_inputs([str(root / spec)], log=lambda m: None)) == 3
        return
    with pytest.raises(UsageError) as e:
        demo.collect_inputs([str(root / spec)], log=lambda m: None)
    assert str(e.value) == message.format(root=root)


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "readme.md").write_text("")
    with pytest.raises(UsageError, match="no images in folder"):
        demo.collect_inputs([str(tmp_path)], log=lambda m: None)


def test_a_missing_path_is_a_one_line_error_with_status_2(capsys, tmp_path):
    args = args_of("--output-dir", str(tmp_path / "never_read"), "--input", str(tmp_path / "missing.jpg"),
                   "--output", str(tmp_path / "o"))
    with pytest.raises(SystemExit) as e:
        run_cli(lambda: demo.main(args), "demo.py")
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == [f"demo.py: error: input not found: {tmp_path / 'missing.jpg'}"]


def test_a_corrupt_image_in_a_folder_is_named_before_the_model_is_built(tmp_path):
    (tmp_path / "imgs").mkdir()
    cv2.imwrite(str(tmp_path / "imgs" / "good.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"not a jpeg" * 20)
    args = args_of("--output-dir", str(tmp_path / "never_read"), "--input", str(tmp_path / "imgs"),
                   "--output", str(tmp_path / "o"))
    with pytest.raises(ImageReadError, match=r"Cannot read image file '.*bad\.jpg': PIL cannot identify it"):
        demo.main(args)


# ------------------------------------------------------------------------------ outputs
def test_output_names_keep_the_name_never_collide_and_never_overwrite_an_input(tmp_path):
    S = demo.Source
    sources = [S("image", "x/a.png"), S("image", "y/a.png"), S("image", "z/A.PNG"), S("image", "w/a-2.png"),
               S("image", "v/scan.gif"), S("video", "x/a.mov"), S("video", "y/a.mp4"), S("webcam", "0")]
    names = demo.output_names(sources, "out")
    assert {k: os.path.basename(v) for k, v in names.items()} == {
        "x/a.png": "a.png", "y/a.png": "a-2.png", "z/A.PNG": "A-3.PNG", "w/a-2.png": "a-2-2.png",
        "v/scan.gif": "scan.png", "x/a.mov": "a.mp4", "y/a.mp4": "a-2.mp4", "0": "webcam0.mp4"}
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(UsageError, match="would overwrite the input"):
        demo.output_names([S("image", str(tmp_path / "a.png"))], str(tmp_path))
    with pytest.raises(UsageError, match="would overwrite the input"):  # before the model is built
        demo.main(args_of("--output-dir", str(tmp_path / "never_read"), "--input", str(tmp_path),
                          "--output", str(tmp_path)))


def test_tiled_png_mode_and_the_score_thresh_alias_still_work(run, media, tmp_path):
    root, _ = media
    args = args_of("--output-dir", run, "--device", "cpu", "--input", str(root / "imgs" / "a.png"),
                   str(root / "imgs2" / "a.png"),
                   "--score-thresh", "0", "--out", str(tmp_path / "tile.png"))
    assert args.confidence_threshold == 0
    result = demo.main(args)
    tiled = cv2.imread(str(tmp_path / "tile.png"))
    assert tiled.shape == (H, 2 * W, 3)
    assert len(result.drawn) == 2 and len(result.results) == 2 * MAX_DETS
    assert os.listdir(tmp_path) == ["tile.png"]  # no --output: nothing else written


def test_dataset_source_with_output_out_and_json_uses_the_dataset_ids(run, tmp_path):
    from pycocotools.coco import COCO

    args = args_of("--output-dir", run, "--device", "cpu", "--dataset", "dsla_synth_tiny", "--num-images", "2",
                   "--confidence-threshold", "0", "--out", str(tmp_path / "tile.png"), "--output", str(tmp_path / "o"),
                   "--json", str(tmp_path / "det.json"))
    demo.main(args)
    assert sorted(os.listdir(tmp_path / "o")) == ["000000.jpg", "000001.jpg"] and (tmp_path / "tile.png").is_file()
    det = json.loads((tmp_path / "det.json").read_text())
    gt = COCO(synthetic_split_paths("tiny")[0])
    loaded = gt.loadRes(det)  # COCO's own reader takes the file as it is
    assert set(loaded.getImgIds()) <= set(gt.getImgIds()) and len(det) == 2 * MAX_DETS
    assert {gt.imgs[d["image_id"]]["file_name"] for d in det} == {"000000.jpg", "000001.jpg"}


def test_videos_need_an_output_folder_and_out_needs_images(media, tmp_path):
    root, video = media
    never = str(tmp_path / "never_read")
    with pytest.raises(UsageError, match=r"--out tiles images, and the inputs hold none: videos are written to"):
        demo.main(args_of("--output-dir", never, "--input", video, "--out", str(tmp_path / "t.png")))
    with pytest.raises(UsageError, match="videos are written to --output DIR"):
        demo.main(args_of("--output-dir", never, "--input", str(root / "imgs" / "a.png"), video,
                          "--out", str(tmp_path / "t.png")))
    with pytest.raises(UsageError, match="give --output DIR"):
        demo.main(args_of("--output-dir", never, "--input", video))
    (tmp_path / "file").write_text("")
    with pytest.raises(UsageError, match="is a file; it names a folder"):
        demo.main(args_of("--output-dir", never, "--input", video, "--output", str(tmp_path / "file")))
    with pytest.raises(SystemExit):  # argparse: one source at a time
        args_of("--output-dir", never, "--input", video, "--dataset", "dsla_synth_tiny", "--out", "x.png")


def test_webcam_goes_through_the_video_path(run, media, tmp_path, monkeypatch):
    """No camera here: cv2.VideoCapture(0) is pointed at the test video."""
    _, video = media
    real = cv2.VideoCapture
    opened = []
    monkeypatch.setattr(demo.cv2, "VideoCapture", lambda src: opened.append(src) or real(video if src == 0 else src))
    monkeypatch.setattr(demo, "display_available", lambda: False)
    result = demo.main(args_of("--output-dir", run, "--device", "cpu", "--webcam", "0", "--output", str(tmp_path / "o"),
                               "--json", str(tmp_path / "det.json"), "--confidence-threshold", "0"))
    assert opened == [0, 0]  # checked before the model, then read
    assert os.listdir(tmp_path / "o") == ["webcam0.mp4"]
    assert video_facts(tmp_path / "o" / "webcam0.mp4") == (FRAMES, W, H, FPS)
    assert {d["file_name"] for d in result.results} == {"webcam0"} and len(result.results) == FRAMES * MAX_DETS
    with pytest.raises(UsageError, match="no display to show the webcam in"):
        demo.main(args_of("--output-dir", run, "--webcam", "0", "--out", str(tmp_path / "t.png")))


def test_a_missing_webcam_is_a_clear_error(tmp_path, monkeypatch):
    class Closed:
        def isOpened(self):
            return False

    monkeypatch.setattr(demo.cv2, "VideoCapture", lambda src: Closed())
    with pytest.raises(demo.VideoReadError, match=r"cannot open webcam 3 \(cv2.VideoCapture\(3\) failed"):
        demo.main(args_of("--output-dir", str(tmp_path / "never_read"), "--webcam", "3",
                          "--output", str(tmp_path / "o")))


def test_webcam_window_stops_on_q_and_on_ctrl_c_keeping_a_playable_video(run, media, tmp_path, monkeypatch):
    """The display path, with OpenCV's window calls faked (no display or camera here)."""
    _, video = media
    real = cv2.VideoCapture
    monkeypatch.setattr(demo.cv2, "VideoCapture", lambda src: real(video if src == 0 else src))
    monkeypatch.setattr(demo, "display_available", lambda: True)
    monkeypatch.setattr(demo.cv2, "destroyWindow", lambda name: None)
    shown = []

    def imshow(name, image):
        shown.append(image.shape)
        if stop == "ctrl-c" and len(shown) == 4:
            raise KeyboardInterrupt

    monkeypatch.setattr(demo.cv2, "imshow", imshow)
    monkeypatch.setattr(demo.cv2, "waitKey", lambda ms: ord("q") if stop == "q" and len(shown) == 3 else -1)
    for stop, frames in (("q", 3), ("ctrl-c", 4)):
        shown.clear()
        out = tmp_path / stop
        result = demo.main(args_of("--output-dir", run, "--device", "cpu", "--webcam", "0", "--output", str(out),
                                   "--confidence-threshold", "0"))
        assert shown == [(H, W, 3)] * frames and len(result.results) == frames * MAX_DETS
        assert video_facts(out / "webcam0.mp4") == (frames, W, H, FPS)
    shown.clear()
    stop = "q"
    demo.main(args_of("--output-dir", run, "--device", "cpu", "--webcam", "0"))  # a window alone is enough
    assert len(shown) == 3

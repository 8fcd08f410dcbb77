#!/usr/bin/env python
"""Install Detectron2 v0.6's unmodified Python sources, without its C++ extension.

Detectron2 is not published on PyPI. ``pb1-detectron2==0.6`` is an sdist whose
``detectron2/**/*.py`` files are byte-identical to upstream tag v0.6, but it lacks
``detectron2/layers/csrc`` and its ``setup.py`` still declares the extension, so a plain
``pip install`` fails. This script:

1. does nothing if a ``detectron2`` distribution is already installed (a complete build
   from source with CUDA, or a previous run of this script);
2. downloads the sdist from the package index, verifies its sha256 (pinned below);
3. wraps the untouched ``detectron2/`` package in a minimal pure-Python project named
   ``detectron2`` (version 0.6) and installs it with pip, so ``pip show detectron2`` sees it.

The missing compiled ops are handled at import time by :mod:`dsla_d2.compat`.

Usage: ``python tools/install_detectron2.py [--sdist FILE]``
"""
import argparse
import hashlib
import html.parser
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DEFAULT_INDEX = "https://pypi.org/simple"

# What the sdist declares, minus black (only used by LazyConfig.to_py), future and pydot
# (caffe2 export only). omegaconf 2.4 conflicts with hydra-core 1.3 (upstream 7d2e68db).
RUNTIME_REQUIREMENTS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.3,<2.4",
    "hydra-core>=1.1",
]

SETUP_PY = """\
from setuptools import find_packages, setup

setup(
    name="detectron2",
    version={version!r},
    description="Detectron2 v0.6 Python sources (from the {sdist} sdist), no C++ extension",
    url="https://github.com/facebookresearch/detectron2",
    packages=find_packages(include=["detectron2", "detectron2.*"]),
    python_requires=">=3.7",
    install_requires={requires!r},
)
"""


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.extend(v for k, v in attrs if k == "href" and v)


def installed_version():
    try:
        return importlib.metadata.version("detectron2")
    except importlib.metadata.PackageNotFoundError:
        return None


def find_sdist_url(index_url):
    page = index_url.rstrip("/") + f"/{SDIST_NAME}/"
    with urllib.request.urlopen(page, timeout=120) as resp:
        parser = _LinkParser()
        parser.feed(resp.read().decode("utf-8"))
    for link in parser.links:
        url = urllib.parse.urljoin(page, link)
        if urllib.parse.urlparse(url).path.endswith("/" + SDIST_FILE):
            return url.split("#")[0]
    raise SystemExit(f"{SDIST_FILE} is not listed on {page}")


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch_sdist(dest_dir, index_url):
    url = find_sdist_url(index_url)
    path = os.path.join(dest_dir, SDIST_FILE)
    print(f"[install_detectron2] downloading {url}")
    with urllib.request.urlopen(url, timeout=300) as resp, open(path, "wb") as out:
        shutil.copyfileobj(resp, out)
    return path


def build_project(sdist_path, work_dir):
    digest = sha256_of(sdist_path)
    if digest != SDIST_SHA256:
        raise SystemExit(
            f"sha256 mismatch for {sdist_path}: got {digest}, expected {SDIST_SHA256}"
        )
    with tarfile.open(sdist_path) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(f"{SDIST_NAME}-{SDIST_VERSION}/detectron2/")]
        tar.extractall(work_dir, members=members, filter="data")
    src = os.path.join(work_dir, f"{SDIST_NAME}-{SDIST_VERSION}")
    with open(os.path.join(src, "setup.py"), "w") as f:
        f.write(SETUP_PY.format(version=SDIST_VERSION, sdist=SDIST_NAME, requires=RUNTIME_REQUIREMENTS))
    return src


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sdist", help="use this local copy of the sdist instead of downloading")
    parser.add_argument(
        "--index-url",
        default=os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX),
        help="simple (PEP 503) index to download the sdist from",
    )
    parser.add_argument("--force", action="store_true", help="reinstall even if present")
    args = parser.parse_args()

    version = installed_version()
    if version is not None and not args.force:
        print(f"[install_detectron2] detectron2 {version} is already installed; nothing to do")
        return
    with tempfile.TemporaryDirectory() as tmp:
        sdist = args.sdist or fetch_sdist(tmp, args.index_url)
        project = build_project(sdist, tmp)
        cmd = [sys.executable, "-m", "pip", "install", "--no-build-isolation", project]
        print("[install_detectron2] " + " ".join(cmd))
        subprocess.check_call(cmd)
    print(f"[install_detectron2] installed detectron2 {installed_version()} (pure Python)")


if __name__ == "__main__":
    main()

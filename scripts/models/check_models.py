#!/usr/bin/env python3
"""Validate the cached models: sha256 of every manifest file, then real inference with ONNX Runtime.

    check_models.py MANIFEST [--sha-only] [--json OUT] [--runs N]

Checks (each on real images; see docs/models.md):
  nanodet-coco  coffee.png → "cup", astronaut.png → "person", chelsea.png → "cat" (in the detections)
  blazeface     astronaut.png → exactly one face with score > 0.5
  blazeface-back astronaut.png at 256×256 → exactly one face with score > 0.8
  ppocr-*       "Coca-Cola" and "NETFLIX" rendered onto a photo → det finds the lines, rec reads them (> 0.9)
Latencies are medians over --runs runs with 1 intra-op thread. Exit status 1 when anything fails.
The decoders here are the reference for the Rust host (same constants, same order of operations).
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image

# ---------------------------------------------------------------------------------------------------
# Shared helpers


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def session(path):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def timed(fn, runs):
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def nms(boxes, scores, iou):
    """Greedy NMS; boxes [N,4] as x1,y1,x2,y2. Returns kept indices, best first."""
    order = np.argsort(-scores)
    keep = []
    while order.size:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        ov = inter / (area(boxes[i]) + area(boxes[rest]) - inter + 1e-9)
        order = rest[ov <= iou]
    return keep


# ---------------------------------------------------------------------------------------------------
# NanoDet (converted from TF.js): input [1,3,416,416] BGR, outputs cls_S [1,N,80] (sigmoid) and box_S [1,N,44]

NANODET_SIZE = 416
NANODET_MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # B, G, R
NANODET_STD = np.array([57.375, 57.12, 58.395], np.float32)
NANODET_STRIDES = (8, 16, 32)
NANODET_BINS = 11  # reg_max + 1


def nanodet_input(rgb):
    img = Image.fromarray(rgb).resize((NANODET_SIZE, NANODET_SIZE), Image.BILINEAR)  # stretched, no letterbox
    bgr = np.asarray(img, np.float32)[:, :, ::-1]
    x = (bgr - NANODET_MEAN) / NANODET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def nanodet_decode(outs, labels, score_thr=0.3, iou=0.5, max_det=100):
    """outs: dict name → array. Returns [(label, score, [x,y,w,h] relative 0..1)], best first."""
    all_boxes, all_scores, all_cls = [], [], []
    for s in NANODET_STRIDES:
        cls = outs[f"cls_{s}"][0]  # [N,80], already sigmoid
        reg = outs[f"box_{s}"][0].reshape(-1, 4, NANODET_BINS)  # [N, 4 sides (l,t,r,b), 11 bins]
        cells = NANODET_SIZE // s
        cls_id = cls.argmax(1)
        score = cls[np.arange(cls.shape[0]), cls_id]
        keep = score > score_thr
        if not keep.any():
            continue
        idx = np.nonzero(keep)[0]
        r = reg[idx]
        r = np.exp(r - r.max(-1, keepdims=True))
        r /= r.sum(-1, keepdims=True)
        dist = (r * np.arange(NANODET_BINS, dtype=np.float32)).sum(-1) * s  # [K,4]
        cx = (idx % cells + 0.5) * s
        cy = (idx // cells + 0.5) * s
        b = np.stack([cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]], 1)
        all_boxes.append(np.clip(b, 0, NANODET_SIZE))
        all_scores.append(score[idx])
        all_cls.append(cls_id[idx])
    if not all_boxes:
        return []
    boxes, scores, classes = map(np.concatenate, (all_boxes, all_scores, all_cls))
    dets = []
    for c in np.unique(classes):  # per-class NMS
        m = np.nonzero(classes == c)[0]
        for k in nms(boxes[m], scores[m], iou):
            i = m[k]
            x1, y1, x2, y2 = boxes[i] / NANODET_SIZE
            dets.append((labels[int(c)], float(scores[i]), [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]))
    dets.sort(key=lambda d: -d[1])
    return dets[:max_det]


# ---------------------------------------------------------------------------------------------------
# BlazeFace front 128: input:0 [1,128,128,3] RGB in [-1,1]; 512 = 16x16x2 anchors, 384 = 8x8x6 anchors

BLAZEFACE_SIZE = 128
BLAZEFACE_LAYERS = ((16, 2, "Identity:0", "Identity_2:0"), (8, 6, "Identity_1:0", "Identity_3:0"))


def blazeface_input(rgb, size=BLAZEFACE_SIZE):
    img = Image.fromarray(rgb).resize((size, size), Image.BILINEAR)
    x = np.asarray(img, np.float32) / 127.5 - 1.0
    return x[None]


def blazeface_decode(outs, score_thr=0.5, iou=0.3, size=BLAZEFACE_SIZE):
    boxes, scores, kps = [], [], []
    for cells, anchors, score_name, box_name in BLAZEFACE_LAYERS:
        sc = 1 / (1 + np.exp(-np.clip(outs[score_name][0, :, 0].astype(np.float64), -100, 100)))  # logits → probability
        bx = outs[box_name][0]  # [cells*cells*anchors, 16]
        i = np.arange(sc.shape[0])
        cell = i // anchors
        ax = (cell % cells + 0.5) / cells
        ay = (cell // cells + 0.5) / cells
        cx = ax + bx[:, 0] / size
        cy = ay + bx[:, 1] / size
        w = bx[:, 2] / size
        h = bx[:, 3] / size
        boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1))
        scores.append(sc)
        k = bx[:, 4:16].reshape(-1, 6, 2) / size
        kps.append(k + np.stack([ax, ay], 1)[:, None, :])
    boxes, scores, kps = map(np.concatenate, (boxes, scores, kps))
    m = np.nonzero(scores > score_thr)[0]
    out = []
    for k in nms(boxes[m], scores[m], iou):
        i = m[k]
        x1, y1, x2, y2 = boxes[i]
        out.append({"score": float(scores[i]), "box": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "keypoints": kps[i].round(4).tolist()})
    return out


# ---------------------------------------------------------------------------------------------------
# PP-OCR (RapidOCR 1.4.4 conventions): BGR, (px/255 - 0.5) / 0.5, NCHW


def ppocr_norm(bgr):
    return ((bgr.astype(np.float32) / 255.0 - 0.5) / 0.5).transpose(2, 0, 1)


def ppocr_det_input(rgb, limit_side_len=736):
    """RapidOCR 'min' limit: scale so the short side is ≥ 736, then round each side to a multiple of 32."""
    h, w = rgb.shape[:2]
    ratio = limit_side_len / min(h, w) if min(h, w) < limit_side_len else 1.0
    rh = max(32, int(round(int(h * ratio) / 32) * 32))
    rw = max(32, int(round(int(w * ratio) / 32) * 32))
    img = np.asarray(Image.fromarray(rgb).resize((rw, rh), Image.BILINEAR))
    return ppocr_norm(img[:, :, ::-1])[None], (h / rh, w / rw)


def label_components(mask):
    """4-connected components of a boolean mask → list of (ys, xs). Pure numpy/python (validation only)."""
    h, w = mask.shape
    seen = np.zeros_like(mask, bool)
    comps = []
    for y0, x0 in zip(*np.nonzero(mask)):
        if seen[y0, x0]:
            continue
        stack = [(y0, x0)]
        seen[y0, x0] = True
        ys, xs = [], []
        while stack:
            y, x = stack.pop()
            ys.append(y)
            xs.append(x)
            for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
                if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        comps.append((np.array(ys), np.array(xs)))
    return comps


def ppocr_det_decode(prob, scale, thresh=0.3, box_thresh=0.5, unclip_ratio=1.6, min_size=3):
    """DB post-processing simplified to axis-aligned boxes (enough for horizontal text):
    binarise at 0.3, connected components, mean probability ≥ 0.5, expand by area·1.6/perimeter."""
    mask = prob > thresh
    boxes = []
    for ys, xs in label_components(mask):
        x1, x2, y1, y2 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        if min(x2 - x1, y2 - y1) < min_size:
            continue
        score = float(prob[y1:y2, x1:x2][mask[y1:y2, x1:x2]].mean())
        if score < box_thresh:
            continue
        bw, bh = x2 - x1, y2 - y1
        d = bw * bh * unclip_ratio / (2 * (bw + bh))
        sy, sx = scale
        boxes.append((score, [max(0, (x1 - d) * sx), max(0, (y1 - d) * sy), (x2 + d) * sx, (y2 + d) * sy]))
    boxes.sort(key=lambda b: (b[1][1], b[1][0]))
    return boxes


def ppocr_rec_input(rgb_crops, height=48, min_width=320):
    ratios = [c.shape[1] / c.shape[0] for c in rgb_crops]
    width = max(min_width, int(height * max(ratios)))
    batch = np.zeros((len(rgb_crops), 3, height, width), np.float32)
    for i, c in enumerate(rgb_crops):
        rw = min(width, int(math.ceil(height * ratios[i])))
        img = np.asarray(Image.fromarray(c).resize((rw, height), Image.BILINEAR))
        batch[i, :, :, :rw] = ppocr_norm(img[:, :, ::-1])
    return batch


def ctc_decode(probs, keys):
    """probs [T, len(keys)+2]: index 0 = CTC blank, 1..n = keys, n+1 = space."""
    idx = probs.argmax(1)
    conf = probs.max(1)
    sel = np.ones_like(idx, bool)
    sel[1:] = idx[1:] != idx[:-1]
    sel &= idx != 0
    chars = [keys[i - 1] if i <= len(keys) else " " for i in idx[sel]]
    return "".join(chars), float(conf[sel].mean()) if sel.any() else 0.0


def render_text_fixture(photo_rgb, out_path):
    """Draw "Coca-Cola" and "NETFLIX" on a real photo (bands so the text is legible, as on a sign)."""
    from PIL import ImageDraw, ImageFont

    img = Image.fromarray(photo_rgb).convert("RGB").resize((600, 400), Image.BILINEAR)
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=56)  # Pillow's bundled FreeType font: no system fonts needed
    d.rectangle([30, 40, 420, 130], fill=(200, 16, 46))  # Coca-Cola red
    d.text((50, 50), "Coca-Cola", font=font, fill=(255, 255, 255))
    d.rectangle([150, 260, 520, 350], fill=(20, 20, 20))
    d.text((170, 270), "NETFLIX", font=font, fill=(229, 9, 20))  # Netflix red on black
    tmp = out_path + ".tmp.png"
    img.save(tmp, optimize=False)
    os.replace(tmp, out_path)


# ---------------------------------------------------------------------------------------------------


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("--sha-only", action="store_true", help="only verify sha256 of the manifest's files")
    ap.add_argument("--json", help="write the results here (atomically)")
    ap.add_argument("--runs", type=int, default=10)
    a = ap.parse_args(argv)

    man = json.load(open(a.manifest))
    base = os.path.dirname(os.path.abspath(a.manifest))
    failures = []

    def path_of(p):
        return p if os.path.isabs(p) else os.path.join(base, p)

    # 1. sha256 of everything the manifest lists.
    entries = [(m["name"], m["file"], m["sha256"]) for m in man["models"]]
    entries += [(f"{m['name']}.{k}", m[k]["file"], m[k]["sha256"]) for m in man["models"] for k in ("labels", "keys") if k in m]
    entries += [("onnxruntime", man["onnxruntime"]["file"], man["onnxruntime"]["sha256"])]
    entries += [(f"fixture {f['name']}", f["file"], f["sha256"]) for f in man.get("fixtures", [])]
    for name, f, want in entries:
        p = path_of(f)
        if not os.path.exists(p):
            failures.append(f"{name}: {p} is missing")
            print(f"FAIL {name}: {p} is missing")
            continue
        got = sha256(p)
        if got != want:
            failures.append(f"{name}: sha256 {got} != manifest {want}")
            print(f"FAIL {name}: {p}: sha256 {got}, manifest says {want}")
        else:
            print(f"ok   sha256 {name}")
    if failures or a.sha_only:
        return finish(failures, {}, a.json)

    models = {m["name"]: m for m in man["models"]}
    fixtures = {f["name"]: f for f in man.get("fixtures", [])}
    results = {"onnxruntime": None, "threads": 1, "runs": a.runs}
    import onnxruntime as ort

    results["onnxruntime"] = ort.__version__

    # 2. NanoDet on real photos.
    m = models["nanodet-coco"]
    labels = open(path_of(m["labels"]["file"])).read().splitlines()
    sess = session(path_of(m["file"]))
    names = [o.name for o in sess.get_outputs()]
    res = {}
    for fx in ("coffee", "astronaut", "chelsea"):
        f = fixtures[fx]
        x = nanodet_input(load_rgb(path_of(f["file"])))
        outs = dict(zip(names, sess.run(None, {"input": x})))
        dets = nanodet_decode(outs, labels)
        top = [(d[0], round(d[1], 3)) for d in dets[:5]]
        found = {e: next((round(d[1], 3) for d in dets if d[0] == e), None) for e in f["expect"]["nanodet-coco"]}
        ok = all(v is not None for v in found.values())
        res[fx] = {"top5": top, "expected": found, "ok": ok}
        print(f"{'ok  ' if ok else 'FAIL'} nanodet {fx}: expected {found}; top {top}")
        if not ok:
            failures.append(f"nanodet-coco on {fx}: expected {f['expect']['nanodet-coco']}, got {top}")
    res["latency_ms"] = timed(lambda: sess.run(None, {"input": x}), a.runs)
    print(f"     nanodet latency {res['latency_ms']:.1f} ms")
    results["nanodet-coco"] = res

    # 3. BlazeFace: one face on astronaut.png, none on the others.
    m = models["blazeface"]
    sess = session(path_of(m["file"]))
    names = [o.name for o in sess.get_outputs()]
    res = {}
    for fx in ("astronaut", "coffee", "chelsea"):
        f = fixtures[fx]
        x = blazeface_input(load_rgb(path_of(f["file"])))
        faces = blazeface_decode(dict(zip(names, sess.run(None, {"input:0": x}))))
        want = f["expect"]["blazeface_faces"]
        ok = len(faces) == want and all(q["score"] > 0.5 for q in faces)
        res[fx] = {"faces": faces, "ok": ok}
        print(f"{'ok  ' if ok else 'FAIL'} blazeface {fx}: {len(faces)} face(s) (expected {want}) "
              f"{[(round(q['score'], 3), [round(v, 3) for v in q['box']]) for q in faces]}")
        if not ok:
            failures.append(f"blazeface on {fx}: expected {want} face(s) > 0.5, got {faces}")
    x = blazeface_input(load_rgb(path_of(fixtures["astronaut"]["file"])))
    res["latency_ms"] = timed(lambda: sess.run(None, {"input:0": x}), a.runs * 5)
    print(f"     blazeface latency {res['latency_ms']:.2f} ms")
    results["blazeface"] = res

    # 3b. BlazeFace back camera (256): the astronaut's face, confidently, in the same place.
    m = models["blazeface-back"]
    sess = session(path_of(m["file"]))
    names = [o.name for o in sess.get_outputs()]
    x = blazeface_input(load_rgb(path_of(fixtures["astronaut"]["file"])), 256)
    faces = blazeface_decode(dict(zip(names, sess.run(None, {"input:0": x}))), 0.8, size=256)
    ok = len(faces) == 1 and 0.3 < faces[0]["box"][0] + faces[0]["box"][2] / 2 < 0.6
    print(f"{'ok  ' if ok else 'FAIL'} blazeface-back astronaut: {len(faces)} face(s) > 0.8 (expected 1) "
          f"{[(round(q['score'], 3), [round(v, 3) for v in q['box']]) for q in faces]}")
    if not ok:
        failures.append(f"blazeface-back on astronaut: expected one face > 0.8, got {faces}")
    latency = timed(lambda: sess.run(None, {"input:0": x}), a.runs * 5)
    print(f"     blazeface-back latency {latency:.2f} ms")
    results["blazeface-back"] = {"faces": faces, "ok": ok, "latency_ms": latency}

    # 4. PP-OCR det + cls + rec on the rendered brand-text fixture.
    f = fixtures["ocr-brands"]
    rgb = load_rgb(path_of(f["file"]))
    det = session(path_of(models["ppocr-det"]["file"]))
    rec = session(path_of(models["ppocr-rec"]["file"]))
    cls = session(path_of(models["ppocr-cls"]["file"]))
    keys = open(path_of(models["ppocr-rec"]["keys"]["file"]), encoding="utf-8").read().split("\n")[:-1]
    x, scale = ppocr_det_input(rgb)
    prob = det.run(None, {"x": x})[0][0, 0]
    boxes = ppocr_det_decode(prob, scale)
    crops = []
    for _, (x1, y1, x2, y2) in boxes:
        crops.append(rgb[int(y1):int(math.ceil(y2)), int(x1):int(math.ceil(x2))])
    texts = []
    if crops:
        cls_in = np.stack([ppocr_rec_input([c], 48, 192)[0, :, :, :192] for c in crops])
        cls_out = cls.run(None, {"x": cls_in})[0]  # [N,2]: 0°, 180°
        rec_in = ppocr_rec_input(crops)
        probs = rec.run(None, {"x": rec_in})[0]
        for i in range(len(crops)):
            t, c = ctc_decode(probs[i], keys)
            texts.append({"text": t, "score": round(c, 4), "box": [round(v, 1) for v in boxes[i][1]],
                          "angle_180": bool(cls_out[i].argmax() == 1)})
    found = {e: next((t["score"] for t in texts if t["text"] == e), None) for e in f["expect"]["ppocr"]}
    ok = all(v is not None and v > 0.9 for v in found.values())
    det_lat = timed(lambda: det.run(None, {"x": x}), max(3, a.runs // 3))
    one = rec_in[:1] if crops else None
    rec_lat = timed(lambda: rec.run(None, {"x": one}), a.runs) if crops else None
    cls_lat = timed(lambda: cls.run(None, {"x": cls_in[:1]}), a.runs) if crops else None
    results["ppocr"] = {"texts": texts, "expected": found, "ok": ok, "det_input": list(x.shape),
                        "det_latency_ms": det_lat, "rec_latency_ms_per_line": rec_lat,
                        "rec_input": list(rec_in.shape[1:]) if crops else None, "cls_latency_ms": cls_lat}
    print(f"{'ok  ' if ok else 'FAIL'} ppocr: read {[(t['text'], t['score']) for t in texts]}")
    print(f"     ppocr latency: det {det_lat:.0f} ms at {x.shape[3]}x{x.shape[2]}, rec {rec_lat or 0:.1f} ms/line "
          f"at {rec_in.shape[3] if crops else 0}x48, cls {cls_lat or 0:.1f} ms")
    if not ok:
        failures.append(f"ppocr: expected {f['expect']['ppocr']} > 0.9, got {texts}")

    # 5. A user-supplied CLIP model: run it once on neutral inputs (shapes only; no accuracy claim).
    if "clip" in models:
        sess = session(path_of(models["clip"]["file"]))
        feeds = {}
        for i in sess.get_inputs():
            dims = [d if isinstance(d, int) and d > 0 else None for d in i.shape]
            if i.name == "pixel_values":
                default = [1, 3, 224, 224]
            else:  # input_ids, attention_mask: [N, 77]
                default = [1, 77]
            shape = [d or default[k] if k < len(default) else d or 1 for k, d in enumerate(dims)]
            dt = np.int64 if "int64" in i.type else (np.int32 if "int32" in i.type else np.float32)
            feeds[i.name] = np.ones(shape, dt) if i.name == "attention_mask" else np.zeros(shape, dt)
        try:
            outs = sess.run(None, feeds)
            results["clip"] = {"ok": True, "outputs": {o.name: list(v.shape) for o, v in zip(sess.get_outputs(), outs)}}
            print(f"ok   clip runs: {results['clip']['outputs']}")
        except Exception as e:  # noqa: BLE001
            failures.append(f"clip: running the model on neutral inputs failed: {e}")
            print(f"FAIL clip: {e}")

    return finish(failures, results, a.json)


def finish(failures, results, out):
    results["ok"] = not failures
    results["failures"] = failures
    if out:
        tmp = out + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(results, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, out)
    if failures:
        print("check_models: FAILED:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    print("check_models: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Hot swap on a live stream, measured through the real server (`scripts/bench tenants`).

A tenant uploads the SDK example twice under two names and publishes a 640x360 30 fps stream
over RTMP (ffmpeg); while it is live, its pipeline is switched between the two `--swaps` times.
Reported: activate -> first frame on the new version (the PUT answers once that frame is
analysed), in ms and in frame intervals; and frames lost to swaps: the frames analysed around
each swap against the stream's usual rate (target 0), with every analysed frame from exactly one
version.
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ingest import MediaAnalyzer  # noqa: E402


def call(method, url, key, body=None, content_type="application/json"):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers={"Authorization": f"Bearer {key}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def upload(base, key, name, path):
    boundary = uuid.uuid4().hex
    with open(path, "rb") as f:
        data = f.read()
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\n{name}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"world\"\r\n\r\ndetector\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"c.wasm\"\r\n\r\n"
            ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    status, answer = call("POST", f"{base}/api/v1/components", key, body,
                          f"multipart/form-data; boundary={boundary}")
    if status != 201:
        sys.exit(f"upload of {name}: {status} {answer}")


def detections(base, key, stream):
    found, cursor = [], None
    while True:
        url = f"{base}/api/v1/streams/{stream}/detections?limit=1000" + (f"&cursor={cursor}" if cursor else "")
        status, page = call("GET", url, key)
        found += page["detections"]
        cursor = page.get("next")
        if not cursor:
            return found


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--components", required=True)
    ap.add_argument("--swaps", type=int, default=10)
    ap.add_argument("--every", type=float, default=2.0, help="seconds between swaps")
    a = ap.parse_args()
    example = os.path.join(a.components, "brand_colour.wasm")
    work = tempfile.mkdtemp(prefix="bench-swap-")
    server = MediaAnalyzer(a.binary, work, 1, analysis="on")
    out = subprocess.run([a.binary, "key", "create", "--tenant", "bench", "--data", server.dir],
                         capture_output=True, text=True, check=True).stdout
    key = re.search(r"API key: (\S+)", out).group(1)
    stream = server.keys[0][1]
    server.start()
    base = f"http://127.0.0.1:{server.http}"
    for _ in range(100):
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=1)
            break
        except Exception:
            time.sleep(0.2)
    seconds = a.swaps * a.every + 8
    publisher = None
    try:
        upload(base, key, "red", example)
        upload(base, key, "white", example)
        pipeline = lambda name, colour: json.dumps(  # noqa: E731
            {"detector": [{"name": name, "config": {"colour": colour, "min-share": "0.2"}}]}).encode()
        url = f"{base}/api/v1/streams/{stream}/pipeline"
        status, _ = call("PUT", url, key, pipeline("red", "e41e2b"))
        assert status == 200, status
        publisher = subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-f", "lavfi", "-i",
             "color=c=white:s=640x360:r=30,drawbox=x=0:y=0:w=320:h=360:color=0xE41E2B@1:t=fill",
             "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-g", "30",
             "-pix_fmt", "yuv420p", "-f", "flv", server.url(0)])
        time.sleep(4)
        latencies, applied = [], []
        for i in range(a.swaps):
            name, colour = ("white", "ffffff") if i % 2 == 0 else ("red", "e41e2b")
            started = time.monotonic()
            status, answer = call("PUT", url, key, pipeline(name, colour))
            latencies.append((time.monotonic() - started) * 1000)
            if status != 200 or answer.get("applies_from_seq") is None:
                sys.exit(f"swap {i}: {status} {answer}")
            applied.append((answer["applies_from_seq"], f"{name}@1"))
            time.sleep(a.every)
        publisher.wait()
        time.sleep(3)
        found = detections(base, key, stream)
    finally:
        if publisher and publisher.poll() is None:
            publisher.kill()
        server.stop()
    by_seq = {}
    for d in found:
        by_seq.setdefault(d["seq"], set()).add(d["component"])
    mixed = [s for s, c in by_seq.items() if len(c) > 1]
    seqs = sorted(by_seq)
    gaps = {b: b - a for a, b in zip(seqs, seqs[1:])}
    swap_frames = {s for s, _ in applied}
    usual = statistics.median([g for s, g in gaps.items() if s not in swap_frames] or [1])
    lost = sum(max(0, gaps.get(s, usual) - usual) for s in swap_frames)
    wrong = [s for s, name in applied if by_seq.get(s) != {name}]
    interval = 1000 / 30
    p50 = statistics.median(latencies)
    print(f"swaps: {a.swaps} on a live 640x360 30 fps stream, {len(seqs)} frames analysed "
          f"(every {usual} frame{'s' if usual != 1 else ''} as usual)")
    print(f"activate -> first frame on the new version: p50 {p50:.0f} ms ({p50 / interval:.1f} frame intervals), "
          f"max {max(latencies):.0f} ms")
    print(f"frames lost to swaps: {lost} (target 0); frames with results from two versions: {len(mixed)}; "
          f"swap frames not on the version set: {len(wrong)}")


if __name__ == "__main__":
    main()

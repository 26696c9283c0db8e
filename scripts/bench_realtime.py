#!/usr/bin/env python3
"""Live analysis of one 1080p30 stream on this machine: does the video path keep 30 fps, how many
frames per second does each component analyse, and how long from ingest to a stored detection
(p50/p99) compared with pure inference time measured in the same run.

Latency of a detection = its analysis wall clock − (publisher start + the frame's media time).
Like the ingest benchmark it includes publisher start-up (~0.1-0.3 s). Everything runs on
127.0.0.1 and stops by itself."""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(url, key):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--seconds", type=int, default=60)
    a = ap.parse_args()

    inference = subprocess.run([a.binary, "bench", "analysis", "--frames", "60"], capture_output=True, text=True)
    m = re.search(r"\| native Rust[^|]*\| ([\d.]+) \| ([\d.]+) \| [\d.]+ \| ([\d.]+) \|", inference.stdout)
    native_frame_ms, model_ms = (float(m.group(2)), float(m.group(3))) if m else (float("nan"), float("nan"))

    with tempfile.TemporaryDirectory(prefix="ma-realtime-") as data:
        rtmp, http = free_port(), free_port()
        server = subprocess.Popen([a.binary, "serve", "--data", data, "--rtmp", f"127.0.0.1:{rtmp}", "--http", f"127.0.0.1:{http}"],
                                  stdout=subprocess.PIPE, stderr=open(os.path.join(data, "serve.log"), "w"), text=True,
                                  env={**os.environ, "RUST_LOG": "info"})
        keys = {}
        while len(keys) < 2:
            line = server.stdout.readline()
            if not line:
                sys.exit("serve exited: see its log")
            for k in ("API key", "Stream key"):
                if line.startswith(k + ":"):
                    keys[k] = line.split(":", 1)[1].strip()
        api = f"http://127.0.0.1:{http}"
        stream = get(f"{api}/api/v1/streams", keys["API key"])["streams"][0]["id"]
        started = time.time()
        publisher = subprocess.Popen(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
                                      "-i", a.clip, "-t", str(a.seconds), "-c", "copy", "-f", "flv",
                                      f"rtmp://127.0.0.1:{rtmp}/live/{keys['Stream key']}"])
        publisher.wait(timeout=a.seconds + 60)
        time.sleep(3)
        detections, cursor = [], None
        while True:
            url = f"{api}/api/v1/streams/{stream}/detections?limit=1000" + (f"&cursor={cursor}" if cursor else "")
            page = get(url, keys["API key"])
            detections += page["detections"]
            cursor = page["next"]
            if not cursor:
                break
        playlist = open(os.path.join(data, "hls", stream, "index.m3u8")).read()
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log = open(os.path.join(data, "serve.log")).read()

    durations = [float(x) for x in re.findall(r"#EXTINF:([\d.]+)", playlist)]
    segments = sorted(int(x) for x in re.findall(r"seg-(\d+)\.ts", playlist))
    frames = {}
    latencies = []
    for d in detections:
        frames.setdefault(d["component"], set()).add(d["seq"])
    by_frame = {}
    for d in detections:
        by_frame.setdefault(d["seq"], d)
    from datetime import datetime
    first_pts = min((d["pts_ms"] for d in detections), default=0)
    for d in by_frame.values():
        wall = datetime.fromisoformat(d["wallclock"].replace("Z", "+00:00")).timestamp()
        latencies.append((wall - (started + (d["pts_ms"] - first_pts) / 1000.0)) * 1000.0)
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    stats = re.search(r"decoded=(\d+) analysed=(\d+) skipped=(\d+) packets_lost=(\d+)", log)
    print(f"\nOne 1080p30 stream for {a.seconds} s with live analysis (object-detector + face-detector), 2 cores\n")
    print(f"video path: {len(durations)} segments in the final playlist window, last segment seq {segments[-1] if segments else '-'}; "
          f"decoded {stats.group(1) if stats else '?'} frames, analysed {stats.group(2) if stats else '?'}, "
          f"skipped {stats.group(3) if stats else '?'} (newest frame wins), packets lost to the decoder {stats.group(4) if stats else '?'}")
    for component, seqs in sorted(frames.items()):
        print(f"{component}: frames with detections {len(seqs)} → {len(seqs) / a.seconds:.1f} analysed frames/s (frames where it found something)")
    print(f"analysed frames/s (all): {int(stats.group(2)) / a.seconds:.1f}" if stats else "")
    print(f"ingest → stored detection: p50 {pct(0.5):.0f} ms, p99 {pct(0.99):.0f} ms (includes publisher start-up)")
    print(f"pure inference (same run, bench analysis): model {model_ms:.1f} ms, native prepare+model+decode {native_frame_ms:.1f} ms per frame")


if __name__ == "__main__":
    main()

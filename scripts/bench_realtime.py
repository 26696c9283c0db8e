#!/usr/bin/env python3
"""Live analysis of one 1080p30 stream on this machine: does the video path keep 30 fps, how many
frames per second does each component analyse, how long from ingest to a stored detection (p50/p99)
and from ingest to the detection arriving on a WebSocket viewer (glass-to-overlay), compared with
pure inference time measured in the same run.

Stored latency = the detection's analysis wall clock − (publisher start + the frame's media time);
it includes publisher start-up (~0.1-0.3 s), like the ingest benchmark. Glass-to-overlay latency =
arrival on the WebSocket − the event's `ingested` time (when the frame's video reached the host), so
publisher start-up is not in it. Everything runs on 127.0.0.1 and stops by itself.

BENCH_RUST_LOG sets the server's RUST_LOG (default info); BENCH_KEEP_LOG=FILE keeps its log."""

import argparse
import base64
import json
import socket
import threading
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


def ws_events(port, path, out, stop):
    """A minimal WebSocket client (RFC 6455, enough for a loopback benchmark): appends
    (arrival time, event) for each text message and answers pings."""
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, buf = buf.split(b"\r\n\r\n", 1)
    if b" 101 " not in head.split(b"\r\n")[0]:
        raise RuntimeError(f"WebSocket refused: {head[:200]!r}")
    s.settimeout(0.5)

    def need(n):
        nonlocal buf
        while len(buf) < n:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                if stop.is_set():
                    raise EOFError
                continue
            if not chunk:
                raise EOFError
            buf += chunk

    try:
        while True:
            need(2)
            op, n, off = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                need(4)
                n, off = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                need(10)
                n, off = int.from_bytes(buf[2:10], "big"), 10
            need(off + n)
            payload, buf = buf[off:off + n], buf[off + n:]
            arrived = time.time()
            if op == 1:
                out.append((arrived, json.loads(payload)))
            elif op == 9:  # ping → pong (client frames are masked)
                mask = os.urandom(4)
                s.sendall(bytes([0x8A, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
            elif op == 8:
                return
    except EOFError:
        return


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
                                  env={**os.environ, "RUST_LOG": os.environ.get("BENCH_RUST_LOG", "info")})
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
        req = urllib.request.Request(f"{api}/api/v1/streams/{stream}/playback-token", method="POST",
                                     headers={"Authorization": f"Bearer {keys['API key']}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            token = json.load(r)["token"]
        events, stop = [], threading.Event()
        viewer = threading.Thread(target=ws_events, args=(http, f"/api/v1/streams/{stream}/events?token={token}", events, stop),
                                  daemon=True)
        viewer.start()
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
        metrics = urllib.request.urlopen(f"{api}/metrics", timeout=10).read().decode()
        stop.set()
        viewer.join(timeout=5)
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log = open(os.path.join(data, "serve.log")).read()
        os.environ.get("BENCH_KEEP_LOG") and open(os.environ["BENCH_KEEP_LOG"], "w").write(log)

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

    # Glass-to-overlay: ingest (the stream's server-side start + media time) → event on the WebSocket.
    frames_ws = [(t, e) for t, e in events if e.get("type") == "detections"]
    metric = lambda name: float(re.search(rf"^media_analyzer_analysis_{name} (\d+)", metrics, re.M).group(1))
    inference_ms = metric("inference_microseconds_total") / 1000.0 / max(1.0, metric("frames_analysed_total"))
    if frames_ws:
        # `ingested`: when the frame's video reached the host (the server's clock, same machine);
        # `timing`: where that frame's time went on the host, its model time included, so the
        # overhead is measured frame by frame.
        ts = lambda v: datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp()
        timed = [((t - ts(e["ingested"])) * 1000.0, e.get("timing") or {}, e["seq"])
                 for t, e in frames_ws if e.get("ingested")]
        glass = sorted(g for g, _, _ in timed)
        overhead = sorted((g - m.get("inference_ms", inference_ms), seq) for g, m, seq in timed)
        without_reorder = sorted(g - m.get("inference_ms", inference_ms) - m.get("reorder_ms", 0) for g, m, _ in timed)
        delivery = sorted((t - ts(e["wallclock"])) * 1000.0 for t, e in frames_ws)
        q = lambda v, p: v[min(len(v) - 1, int(p * len(v)))]
        print(f"WebSocket viewer: {len(frames_ws)} detections events ({len(frames_ws) / a.seconds:.1f}/s)")
        print(f"glass-to-overlay (ingest → event on the WebSocket): p50 {q(glass, 0.5):.0f} ms, p99 {q(glass, 0.99):.0f} ms; "
              f"model time per analysed frame (all components, same run) {inference_ms:.1f} ms")
        print(f"overhead (glass-to-overlay − that frame's model time): p50 {q(overhead, 0.5)[0]:.0f} ms, "
              f"p99 {q(overhead, 0.99)[0]:.0f} ms, max {overhead[-1][0]:.0f} ms (target < 50 ms)")
        print(f"overhead less the stream's B-frame reorder delay: p50 {q(without_reorder, 0.5):.0f} ms, "
              f"p99 {q(without_reorder, 0.99):.0f} ms, max {without_reorder[-1]:.0f} ms")
        print("slowest frames (overhead ms @ seq): " + ", ".join(f"{o:.0f}@{s}" for o, s in overhead[::-1][:10]))
        print(f"analysis start → event on the WebSocket (components, store, bus, fan-out): p50 {q(delivery, 0.5):.1f} ms, "
              f"p99 {q(delivery, 0.99):.1f} ms")
    # Where the time goes, from the host's stage histograms (bucket bounds, so p99 is "at most").
    print("\nstage (host histograms)          mean      p99 ≤")
    for stage in ("reorder", "decode", "queue", "analysis", "output"):
        base = f'media_analyzer_analysis_stage_seconds'
        count = float(re.search(rf'^{base}_count{{stage="{stage}"}} (\S+)', metrics, re.M).group(1))
        total = float(re.search(rf'^{base}_sum{{stage="{stage}"}} (\S+)', metrics, re.M).group(1))
        buckets = [(float(le) if le != "+Inf" else float("inf"), float(n)) for le, n in
                   re.findall(rf'^{base}_bucket{{le="([^"]+)",stage="{stage}"}} (\S+)', metrics, re.M)]
        p99 = next((le for le, n in buckets if count and n >= 0.99 * count), float("nan"))
        print(f"{stage:<32} {total / max(count, 1) * 1000:6.1f} ms  {p99 * 1000:6.0f} ms")

if __name__ == "__main__":
    main()

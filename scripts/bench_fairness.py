#!/usr/bin/env python3
"""Fair share of analysis: N live 1080p30 streams of a real photo with camera-like noise (the
`bench realtime` clip, looped with -c copy) into one media-analyzer with analysis on. Reports each
stream's analysed frames/s, the total, the spread (max/min), and decoded frames (what decoding
cost), from the server's per-stream end-of-stream log lines. Run it at N = 3 and N = 8: with fair
sharing the total at 8 stays near the 3-stream figure and every stream gets its share."""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ingest import MediaAnalyzer, cpu_seconds  # noqa: E402

ENDED = re.compile(r"stream analysis ended.*?stream=(\S+).*?decoded=(\d+).*?analysed=(\d+)")


def run(binary, clip, n, seconds):
    with tempfile.TemporaryDirectory(prefix="ma-fair-") as work:
        server = MediaAnalyzer(binary, work, n, analysis="on", log="info")
        server.start()
        time.sleep(3)  # models load
        cpu0 = cpu_seconds(server.pids())
        publishers = [subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
             "-i", clip, "-t", str(seconds), "-c", "copy", "-f", "flv", server.url(i)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(n)]
        for p in publishers:
            p.wait(timeout=seconds + 30)
        time.sleep(3)
        cpu = cpu_seconds(server.pids()) - cpu0
        # Segments on disk (all are kept), not the live playlist's sliding window.
        listed = [len([f for f in os.listdir(os.path.dirname(server.playlist(i))) if f.endswith(".ts")])
                  for i in range(n)]
        server.stop()
        with open(os.path.join(server.dir, "serve.log")) as f:
            log = f.read()
        if os.environ.get("BENCH_KEEP_LOG"):
            with open(f"{os.environ['BENCH_KEEP_LOG']}.{n}.{int(time.time())}", "w") as f:
                f.write(log)
    rows = {}
    for m in ENDED.finditer(re.sub(r"\x1b\[[0-9;]*m", "", log)):
        rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    ids = [k[1] for k in server.keys]
    per_stream = [rows.get(i, (0, 0)) for i in ids]
    return per_stream, cpu, listed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--clip", required=True)
    ap.add_argument("--streams", default="3,8")
    ap.add_argument("--seconds", type=int, default=40)
    args = ap.parse_args()
    print(f"\nFair share of analysis: N live 1080p30 streams (coffee photo + noise, -c copy), "
          f"{args.seconds} s, {os.cpu_count()} cores\n")
    print("| N | analysed fps per stream | total analysed fps | max/min | decoded frames | HLS segments (min per stream) | CPU (cores) |")
    print("|---|---|---|---|---|---|---|")
    for n in [int(x) for x in args.streams.split(",")]:
        per_stream, cpu, listed = run(args.binary, args.clip, n, args.seconds)
        fps = [a / args.seconds for _, a in per_stream]
        decoded = sum(d for d, _ in per_stream)
        spread = max(fps) / min(fps) if min(fps) > 0 else float("inf")
        print(f"| {n} | {' / '.join(f'{f:.1f}' for f in fps)} | {sum(fps):.1f} | {spread:.2f} | "
              f"{decoded} | {min(listed):.0f} | {cpu / args.seconds:.2f} |", flush=True)


if __name__ == "__main__":
    main()

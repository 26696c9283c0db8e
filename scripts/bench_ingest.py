#!/usr/bin/env python3
"""Ingest benchmark: N concurrent 1080p30 RTMP publishers (pre-encoded clip, -c copy, looped)
into media-analyzer and into nginx-rtmp (HLS on) in the same run, on the same machine.

Reports per server and N: CPU per stream (% of one core), memory per stream (RSS growth over idle),
publish-to-playlist latency (when a segment is listed vs. when its last frame was sent, p50/p99),
and media lost (published media time that never appeared in a playlist).
Everything listens on 127.0.0.1; every process is bounded in time and killed at the end."""

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return total


def rss_bytes(pids):
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except FileNotFoundError:
            pass
    return total


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]
    except Exception:
        return []


def make_clip(cache):
    clip = os.path.join(cache, "clip-1080p30.mp4")
    if os.path.exists(clip):
        return clip
    os.makedirs(cache, exist_ok=True)
    print("encoding the 1080p30 test clip once (cached)", file=sys.stderr)
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
         "-t", "10", "-c:v", "libx264", "-preset", "veryfast", "-b:v", "4500k",
         "-g", "60", "-keyint_min", "60", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
         "-c:a", "aac", "-b:a", "128k", clip + ".tmp.mp4"], check=True)
    os.rename(clip + ".tmp.mp4", clip)
    return clip


def free_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class MediaAnalyzer:
    name = "media-analyzer"

    def __init__(self, binary, workdir, n, analysis="off", log="warn"):
        self.analysis, self.log = analysis, log
        if analysis == "on":
            self.name = "media-analyzer (analysis on)"
        self.binary, self.dir = binary, os.path.join(workdir, "ma")
        os.makedirs(self.dir)
        self.rtmp, self.http = free_port(), free_port()
        self.keys = []
        common = ["--data", self.dir]
        # Create the stream keys up front (the demo tenant is created by `tenant create`).
        out = subprocess.run([binary, "tenant", "create", "bench", *common], capture_output=True, text=True, check=True)
        for i in range(n):
            out = subprocess.run([binary, "key", "create", "--tenant", "bench", "--stream", f"s{i}", *common],
                                 capture_output=True, text=True, check=True).stdout
            self.keys.append(re.search(r"Stream key: (\S+)", out).group(1))
            stream_id = re.search(r"Stream: \S+ \((\S+)\)", out).group(1)
            self.keys[-1] = (self.keys[-1], stream_id)

    def start(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--data", self.dir, "--rtmp", f"127.0.0.1:{self.rtmp}",
             "--http", f"127.0.0.1:{self.http}", "--analysis", self.analysis],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.dir, "serve.log"), "w"),
            env={**os.environ, "RUST_LOG": self.log})

    def pids(self):
        return [self.proc.pid]

    def url(self, i):
        return f"rtmp://127.0.0.1:{self.rtmp}/live/{self.keys[i][0]}"

    def playlist(self, i):
        return os.path.join(self.dir, "hls", self.keys[i][1], "index.m3u8")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class NginxRtmp:
    name = "nginx-rtmp"

    def __init__(self, workdir, n):
        self.dir = os.path.join(workdir, "nginx")
        os.makedirs(os.path.join(self.dir, "hls"))
        # nginx workers run as an unprivileged user: let them write the HLS output.
        os.chmod(workdir, 0o755)
        os.chmod(self.dir, 0o755)
        os.chmod(os.path.join(self.dir, "hls"), 0o777)
        self.rtmp = free_port()
        module = "/usr/lib/nginx/modules/ngx_rtmp_module.so"
        if not os.path.exists(module):
            sys.exit("nginx-rtmp is missing: apt-get install libnginx-mod-rtmp (scripts/setup does)")
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(f"""load_module {module};
daemon off;
master_process on;
worker_processes 1;
error_log {self.dir}/error.log warn;
pid {self.dir}/nginx.pid;
events {{ worker_connections 1024; }}
rtmp {{
  server {{
    listen 127.0.0.1:{self.rtmp};
    chunk_size 4096;
    application live {{
      live on;
      record off;
      hls on;
      hls_path {self.dir}/hls;
      hls_fragment 2s;
      hls_playlist_length 12s;
      hls_nested on;
      hls_cleanup on;
    }}
  }}
}}
""")
        self.keys = [f"s{i}" for i in range(n)]

    def start(self):
        self.proc = subprocess.Popen(["nginx", "-c", os.path.join(self.dir, "nginx.conf"), "-p", self.dir],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pids(self):
        return [self.proc.pid, *children(self.proc.pid)]

    def url(self, i):
        return f"rtmp://127.0.0.1:{self.rtmp}/live/{self.keys[i]}"

    def playlist(self, i):
        return os.path.join(self.dir, "hls", self.keys[i], "index.m3u8")

    def stop(self):
        self.proc.send_signal(signal.SIGQUIT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def read_segments(path):
    """[(name, duration)] listed in the playlist."""
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        return []
    out, dur = [], None
    for line in text.splitlines():
        if line.startswith("#EXTINF:"):
            dur = float(line[8:].split(",")[0])
        elif line and not line.startswith("#") and dur is not None:
            out.append((line, dur))
            dur = None
    return out


def run_one(server, clip, n, seconds):
    server.start()
    time.sleep(1.5)
    pids = server.pids()
    idle_rss = rss_bytes(pids)
    cpu0 = cpu_seconds(pids)
    publishers, started = [], []
    for i in range(n):
        started.append(time.time())
        publishers.append(subprocess.Popen(
            ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
             "-i", clip, "-t", str(seconds), "-c", "copy", "-f", "flv", server.url(i)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    seen = [dict() for _ in range(n)]  # name -> (first seen wall clock, cumulative end media time)
    cumulative = [0.0] * n
    peak_rss = idle_rss
    t_end = time.time() + seconds + 8
    while time.time() < t_end:
        now = time.time()
        for i in range(n):
            for name, dur in read_segments(server.playlist(i)):
                if name not in seen[i]:
                    cumulative[i] += dur
                    seen[i][name] = (now, cumulative[i])
        peak_rss = max(peak_rss, rss_bytes(server.pids()))
        if all(p.poll() is not None for p in publishers) and time.time() > t_end - 5:
            break
        time.sleep(0.05)
    cpu = cpu_seconds(server.pids()) - cpu0
    for p in publishers:
        if p.poll() is None:
            p.kill()
    server.stop()
    latencies, listed = [], []
    for i in range(n):
        items = sorted(seen[i].values(), key=lambda v: v[1])
        listed.append(items[-1][1] if items else 0.0)
        # Skip the last segment: it is closed by the publisher stopping, not by the next keyframe.
        for wall, media_end in items[:-1]:
            latencies.append(wall - (started[i] + media_end))
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    lost = [max(0.0, seconds - l) for l in listed]
    return {
        "cpu_per_stream": 100.0 * cpu / seconds / n,
        "mem_per_stream": (peak_rss - idle_rss) / n / 1e6,
        "lat_p50": pct(0.5) * 1000,
        "lat_p99": pct(0.99) * 1000,
        "lost_s": sum(lost) / n,
        "segments": sum(len(s) for s in seen) / n,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--streams", default="1,10,50")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--analysis-cost", default="1",
                    help="stream counts at which to also run media-analyzer with analysis on "
                         "(its cost per stream is reported as its own row); empty for none")
    args = ap.parse_args()
    for tool in ("ffmpeg", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is required (scripts/setup installs it)")
    clip = make_clip(args.cache)
    rows = []
    with_analysis = {int(x) for x in args.analysis_cost.split(",") if x}
    for n in [int(x) for x in args.streams.split(",")]:
        makers = [lambda w: MediaAnalyzer(args.binary, w, n), lambda w: NginxRtmp(w, n)]
        if n in with_analysis:
            makers.append(lambda w: MediaAnalyzer(args.binary, w, n, analysis="on"))
        for make in makers:
            with tempfile.TemporaryDirectory(prefix="ma-bench-") as work:
                server = make(work)
                print(f"N={n}: {server.name} for {args.seconds} s …", file=sys.stderr, flush=True)
                r = run_one(server, clip, n, args.seconds)
                rows.append((n, server.name, r))
    print(f"\n1080p30 ingest → HLS, {args.seconds} s, publishers: ffmpeg -re -stream_loop -1 -c copy; {os.cpu_count()} cores\n")
    print("| N | server | CPU/stream (% core) | RSS/stream (MB) | latency p50 (ms) | latency p99 (ms) | media lost/stream (s) |")
    print("|---|---|---|---|---|---|---|")
    for n, name, r in rows:
        print(f"| {n} | {name} | {r['cpu_per_stream']:.2f} | {r['mem_per_stream']:.2f} | {r['lat_p50']:.0f} | {r['lat_p99']:.0f} | {r['lost_s']:.2f} |")
    print()
    by = {(n, name): r for n, name, r in rows}
    for n in sorted({n for n, _, _ in rows}):
        a, b = by.get((n, "media-analyzer")), by.get((n, "nginx-rtmp"))
        if a and b:
            print(f"N={n}: CPU/stream {a['cpu_per_stream'] / max(b['cpu_per_stream'], 1e-9):.2f}× nginx-rtmp, "
                  f"RSS/stream {a['mem_per_stream'] / max(b['mem_per_stream'], 1e-9):.2f}× nginx-rtmp, "
                  f"latency p50 {a['lat_p50'] / max(b['lat_p50'], 1e-9):.2f}× nginx-rtmp")
        c = by.get((n, "media-analyzer (analysis on)"))
        if a and c:
            print(f"N={n}: analysis costs {c['cpu_per_stream'] - a['cpu_per_stream']:.1f} % of a core and "
                  f"{c['mem_per_stream'] - a['mem_per_stream']:.1f} MB per stream on top of ingest")


if __name__ == "__main__":
    main()

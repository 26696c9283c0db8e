#!/usr/bin/env python3
"""Batch analysis workers on the Redis work queue: segments/s with 1 and 2 `serve --role analyze`
processes, the scaling ratio, and queue latency.

Each run is a real deployment in miniature: a private redis-server, a fresh PostgreSQL database,
an ingest host (`--role ingest`, no analysis of its own) writing segment copies to a shared
folder, and N worker processes. A burst (a clip published with -c copy, as fast as the socket
takes it: the whole backlog queued at once) measures throughput; a live-paced publish (-re) with
the workers keeping up measures queue latency (queued → a worker starts it, and queued → its
results are stored). Every number comes from the store's job records (queued_at, started_at,
finished_at) and the workers' CPU time from /proc; the CPU figure says how much of this machine
the workers used, which bounds the scaling ratio."""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request

PG_ADMIN = os.environ.get("MEDIA_ANALYZER_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port, limit=120):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"a host on port {port} was not ready within {limit} s")


def psql(url, sql):
    return subprocess.run(["psql", url, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            pass
    return total


class Deployment:
    """Redis, a database, an ingest host and `workers` analysis hosts."""

    def __init__(self, binary, work, workers, every):
        self.binary, self.work = binary, work
        self.procs, self.worker_pids = [], []
        redis_port = free_port()
        self.redis = subprocess.Popen(["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port),
                                       "--save", "", "--appendonly", "no"], cwd=work,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.db = f"ma_bench_workers_{os.getpid()}_{workers}"
        psql(PG_ADMIN, f"CREATE DATABASE {self.db}")
        self.store = re.sub(r"/[^/]*$", f"/{self.db}", PG_ADMIN)
        shared = os.path.join(work, "segments")
        os.makedirs(shared)
        common = ["--store", self.store, "--bus", f"redis://127.0.0.1:{redis_port}",
                  "--segments", f"file://{shared}"]
        env = {**os.environ, "RUST_LOG": "warn"}
        data = os.path.join(work, "ingest")
        out = subprocess.run([binary, "tenant", "create", "bench", "--data", data, *common],
                             capture_output=True, text=True, check=True).stdout
        self.api_key = re.search(r"API key: (\S+)", out).group(1)
        # One stream for the burst, one for the live-paced run: (stream key, stream id).
        self.streams = {}
        for name in ("burst", "live"):
            out = subprocess.run([binary, "key", "create", "--tenant", "bench", "--stream", name, "--data", data,
                                  *common], capture_output=True, text=True, check=True).stdout
            self.streams[name] = (re.search(r"Stream key: (\S+)", out).group(1),
                                  re.search(r"Stream: \S+ \((\S+)\)", out).group(1))
        # Batch mode, set in the store before the ingest host starts (an ingest host serves no API).
        for _, stream in self.streams.values():
            psql(self.store, f"UPDATE streams SET analysis_mode = 'batch', analysis_every = {int(every)} "
                             f"WHERE id = '{stream}'")
        self.rtmp, http = free_port(), free_port()
        self.http = http
        self.procs.append(subprocess.Popen(
            [binary, "serve", "--role", "ingest", "--analysis", "off", "--data", data, *common,
             "--rtmp", f"127.0.0.1:{self.rtmp}", "--http", f"127.0.0.1:{http}", "--host-id", "ingest"],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "ingest.log"), "w"), env=env))
        wait_ready(http)
        for i in range(workers):
            port = free_port()
            p = subprocess.Popen(
                [binary, "serve", "--role", "analyze", "--data", os.path.join(work, f"worker{i}"), *common,
                 "--http", f"127.0.0.1:{port}", "--host-id", f"worker{i}"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, f"worker{i}.log"), "w"), env=env)
            self.procs.append(p)
            self.worker_pids.append(p.pid)
            wait_ready(port)

    def publish(self, clip, name):
        args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
        if name == "live":
            args.append("-re")
        args += ["-i", clip, "-c", "copy", "-f", "flv",
                 f"rtmp://127.0.0.1:{self.rtmp}/live/{self.streams[name][0]}"]
        subprocess.run(args, check=True, timeout=600)

    def jobs(self, name):
        rows = psql(self.store, "SELECT queued_at, started_at, finished_at, frames, state, attempts "
                                f"FROM analysis_jobs WHERE stream_id = '{self.streams[name][1]}' "
                                "ORDER BY segment_seq")
        return [r.split("|") for r in rows.splitlines() if r]

    def wait_done(self, name, limit=900):
        """The stream's jobs, once its playlist has ended and every segment on disk has a job
        that is no longer queued."""
        folder = os.path.join(self.work, "ingest", "hls", self.streams[name][1])
        playlist = os.path.join(folder, "index.m3u8")
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ended = os.path.exists(playlist) and "#EXT-X-ENDLIST" in open(playlist).read()
            segments = len([f for f in os.listdir(folder) if f.endswith(".ts")]) if ended else -1
            jobs = self.jobs(name)
            if ended and len(jobs) >= segments and all(j[4] != "queued" for j in jobs):
                return jobs
            time.sleep(0.25)
        raise SystemExit(f"the workers did not finish within {limit} s")

    def close(self):
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        self.redis.terminate()
        self.redis.wait()
        psql(PG_ADMIN, f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run(binary, burst_clip, live_clip, workers, every):
    with tempfile.TemporaryDirectory(prefix="ma-bench-workers-") as work:
        d = Deployment(binary, work, workers, every)
        try:
            cpu0, t0 = cpu_seconds(d.worker_pids), time.monotonic()
            d.publish(burst_clip, "burst")
            burst = d.wait_done("burst")
            cpu = cpu_seconds(d.worker_pids) - cpu0
            wall = time.monotonic() - t0
            d.publish(live_clip, "live")
            live = d.wait_done("live")
        finally:
            d.close()
    done = [j for j in burst if j[4] == "done"]
    first_start = min(int(j[1]) for j in done)
    last_finish = max(int(j[2]) for j in done)
    span = (last_finish - first_start) / 1000
    frames = sum(int(j[3]) for j in done)
    waits = [(int(j[1]) - int(j[0])) / 1000 for j in live if j[4] == "done"]
    through = [(int(j[2]) - int(j[0])) / 1000 for j in live if j[4] == "done"]
    service = [(int(j[2]) - int(j[1])) / 1000 for j in live if j[4] == "done"]
    return {
        "segments": len(done), "failed": len(burst) - len(done), "span": span,
        "segments_per_s": len(done) / span, "frames_per_s": frames / span,
        "cpu_cores": cpu / wall, "retried": sum(1 for j in burst if int(j[5]) > 1),
        "wait_p50": statistics.median(waits), "wait_p99": pct(waits, 99),
        "through_p50": statistics.median(through), "through_p99": pct(through, 99),
        "service_p50": statistics.median(service),
    }


def make_clip(source, path, seconds):
    if os.path.exists(path):
        return path
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-loop", "1", "-framerate", "30", "-i", source,
                    "-vf", "scale=1280:720,format=yuv420p,noise=alls=6:allf=t", "-r", "30", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "veryfast", "-g", "60", "-f", "flv", path + ".tmp"], check=True)
    os.rename(path + ".tmp", path)
    return path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--seconds", type=int, default=60, help="video in the burst")
    ap.add_argument("--every", type=int, default=3, help="analyse every Nth frame")
    args = ap.parse_args()
    if not shutil.which("redis-server") or not shutil.which("psql"):
        raise SystemExit("redis-server and psql are required: scripts/setup installs them")
    os.makedirs(args.cache, exist_ok=True)
    photo = os.path.join(args.cache, "..", "fixtures", "coffee.png")
    burst = make_clip(photo, os.path.join(args.cache, f"workers-720p30-{args.seconds}s.flv"), args.seconds)
    live = make_clip(photo, os.path.join(args.cache, "workers-720p30-20s.flv"), 20)
    print(f"\nBatch workers on Redis Streams: 720p30 H.264, 1 frame in {args.every} analysed, 2 s segments, "
          f"{args.seconds} s burst + 20 s live-paced, {os.cpu_count()} cores\n")
    print("| workers | segments/s | analysed frames/s | vs. 1 worker | worker CPU (cores) | burst span (s) | "
          "queue wait p50 / p99 (s) | queued → stored p50 / p99 (s) | one segment (s) | retried |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = None
    for n in [int(x) for x in args.workers.split(",")]:
        r = run(args.binary, burst, live, n, args.every)
        base = base or r["segments_per_s"]
        print(f"| {n} | {r['segments_per_s']:.2f} | {r['frames_per_s']:.1f} | {r['segments_per_s'] / base:.2f} | "
              f"{r['cpu_cores']:.2f} | {r['span']:.1f} | {r['wait_p50']:.2f} / {r['wait_p99']:.2f} | "
              f"{r['through_p50']:.2f} / {r['through_p99']:.2f} | {r['service_p50']:.2f} | {r['retried']} |",
              flush=True)


if __name__ == "__main__":
    main()

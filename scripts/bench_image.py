#!/usr/bin/env python3
"""The container image: its size, what the size is made of, and start-to-ready time.

Start-to-ready is measured from `docker run` to the first 200 from /readyz through the published
port, on a fresh volume (first start: the store is created and the demo tenant's keys made) and
again on a restart (the volume kept). The peer, measured in the same run: the same binary
started directly on this machine with a fresh data folder, with the same models and components,
so the ratio is what the container costs at start."""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ready(port, deadline):
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic()
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"not ready on port {port} within the limit")


def docker(*args):
    return subprocess.run(["docker", *args], check=True, capture_output=True, text=True).stdout.strip()


def container_start(image, restart=False):
    """Seconds from `docker run` (or `docker start` of a stopped one) to ready."""
    name = f"ma-bench-image-{os.getpid()}"
    http = free_port()
    try:
        t0 = time.monotonic()
        docker("run", "--detach", "--name", name, "--publish", f"127.0.0.1:{http}:8080", image)
        first = ready(http, t0 + 120) - t0
        if not restart:
            return first
        docker("stop", "--time", "30", name)
        t0 = time.monotonic()
        docker("start", name)
        # The published port may change on start; ask Docker which one it is now.
        port = int(docker("port", name, "8080/tcp").splitlines()[0].rsplit(":", 1)[1])
        return ready(port, t0 + 120) - t0
    finally:
        subprocess.run(["docker", "rm", "--force", "--volumes", name], capture_output=True)


def bare_start(binary, image_root):
    """Seconds from exec to ready for the binary on this machine, same models and components."""
    with tempfile.TemporaryDirectory(prefix="ma-bench-image-") as data:
        http = free_port()
        env = {**os.environ,
               "MEDIA_ANALYZER_MODELS": os.path.join(image_root, "models/manifest.json"),
               "MEDIA_ANALYZER_COMPONENTS": os.path.join(image_root, "components"),
               "MEDIA_ANALYZER_DASHBOARD": os.path.join(image_root, "dashboard"),
               "RUST_LOG": "warn"}
        env.pop("ORT_DYLIB_PATH", None)
        t0 = time.monotonic()
        proc = subprocess.Popen([binary, "serve", "--data", data, "--rtmp", "127.0.0.1:0",
                                 "--http", f"127.0.0.1:{http}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        try:
            return ready(http, t0 + 120) - t0
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image", default="media-analyzer:dev")
    ap.add_argument("--context", required=True, help="scripts/image's build context (what the image adds)")
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    root = os.path.join(args.context, "opt/media-analyzer")
    binary = os.path.join(root, "bin/media-analyzer")

    info = json.loads(docker("image", "inspect", args.image))[0]
    base = info["Config"].get("Labels") or {}
    history = json.loads("[" + ",".join(docker("history", "--no-trunc", "--format", "{{json .}}",
                                               args.image).splitlines()) + "]")
    mib = 1024 * 1024
    print(f"\nContainer image {args.image}: {info['Size'] / mib:.0f} MiB "
          f"(revision {base.get('org.opencontainers.image.revision', '?')}), {os.cpu_count()} cores\n")
    print("| part | MiB |")
    print("|---|---|")
    parts = {
        "media-analyzer binary": du(os.path.join(root, "bin")),
        "models + ONNX Runtime library": du(os.path.join(root, "models")),
        "components (.wasm)": du(os.path.join(root, "components")),
        "dashboard": du(os.path.join(root, "dashboard")),
    }
    for name, size in parts.items():
        print(f"| {name} | {size / mib:.1f} |")
    added = sum(parts.values())
    print(f"| Debian minbase + runtime libraries (the rest) | {(info['Size'] - added) / mib:.1f} |")
    print(f"| layers | {len(history)} |")

    firsts = [container_start(args.image) for _ in range(args.runs)]
    restarts = [container_start(args.image, restart=True) for _ in range(max(1, args.runs // 2))]
    bares = [bare_start(binary, root) for _ in range(args.runs)]
    med = statistics.median
    print(f"\nStart to ready (GET /readyz = 200), median of {args.runs} (min–max):\n")
    print("| start | seconds | vs. the bare binary |")
    print("|---|---|---|")
    print(f"| bare binary, fresh data folder | {med(bares):.2f} ({min(bares):.2f}–{max(bares):.2f}) | 1.00 |")
    print(f"| docker run, fresh volume (first start) | {med(firsts):.2f} ({min(firsts):.2f}–{max(firsts):.2f}) | "
          f"{med(firsts) / med(bares):.2f} |")
    print(f"| docker start, volume kept | {med(restarts):.2f} ({min(restarts):.2f}–{max(restarts):.2f}) | "
          f"{med(restarts) / med(bares):.2f} |")


if __name__ == "__main__":
    if not shutil.which("docker"):
        raise SystemExit("docker is required: scripts/setup installs docker.io")
    main()

#!/usr/bin/env python3
"""Hostile-load benchmark: good 1080p30 publishers stream while hostile peers connect, flood and send
malformed RTMP for the whole run. Reports media lost by the good publishers (published media time
that never appeared in their playlists), the server's RSS (idle, peak, end), its CPU, and the
hostile attempts made vs. what the server counted, by kind (from /metrics).

Everything listens on 127.0.0.1; hostile peers use 127.0.0.2-127.0.0.9 as source addresses (as
several attackers), and every process is bounded in time and killed at the end."""

import argparse
import os
import random
import re
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_ingest import MediaAnalyzer, cpu_seconds, make_clip, read_segments, rss_bytes  # noqa: E402


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(n):
    return b"\x00" + struct.pack(">d", n)


def amf_obj(props):
    out = b"\x03"
    for k, v in props:
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb + v
    return out + b"\x00\x00\x09"


def message(csid, type_id, stream, payload, chunk=128):
    out = bytes([csid]) + b"\0\0\0" + struct.pack(">I", len(payload))[1:] + bytes([type_id])
    out += struct.pack("<I", stream)
    for i in range(0, max(len(payload), 1), chunk):
        if i > 0:
            out += bytes([0xC0 | csid])
        out += payload[i:i + chunk]
    return out


def sps(width, height):
    """A Baseline SPS NAL for width x height (multiples of 16), as media::fixtures builds it."""
    bits = []

    def u(n, v):
        bits.extend((v >> i) & 1 for i in reversed(range(n)))

    def ue(v):
        v += 1
        n = v.bit_length()
        u(n - 1, 0)
        u(n, v)

    u(8, 66), u(8, 0), u(8, 40), ue(0), ue(0), ue(0), ue(0), ue(1), u(1, 0)
    ue(width // 16 - 1), ue(height // 16 - 1), u(1, 1), u(1, 1), u(1, 0), u(1, 0), u(1, 1)
    while len(bits) % 8:
        bits.append(0)
    raw = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
    out, zeros = bytearray([0x67]), 0
    for b in raw:
        if zeros >= 2 and b <= 3:
            out.append(3)
            zeros = 0
        zeros = zeros + 1 if b == 0 else 0
        out.append(b)
    return bytes(out)


class Peer:
    """One hostile connection from a chosen loopback address."""

    def __init__(self, port, source):
        self.sock = socket.socket()
        self.sock.settimeout(3)
        self.sock.bind((source, 0))
        self.sock.connect(("127.0.0.1", port))

    def handshake(self):
        self.sock.sendall(b"\x03" + b"\0" * 8 + os.urandom(1528))
        got = b""
        while len(got) < 3073:
            chunk = self.sock.recv(8192)
            if not chunk:
                raise ConnectionError("closed in handshake")
            got += chunk
        self.sock.sendall(got[1:1537])  # C2 echoes S1

    def send(self, data):
        try:
            self.sock.sendall(data)
        except OSError:
            pass

    def read_until(self, needle, limit=2.0):
        deadline, got = time.time() + limit, b""
        while needle not in got and time.time() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return False
            if not chunk:
                return False
            got += chunk
        return needle in got

    def wait_closed(self, limit=3.0):
        deadline = time.time() + limit
        while time.time() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except socket.timeout:
                continue
            except OSError:
                return True
        return False

    def close(self):
        self.sock.close()


CONNECT = amf_str("connect") + amf_num(1) + amf_obj([("app", amf_str("live"))])


def attack(kind, port, source, hostile_key):
    """Runs one hostile attempt of `kind`; the connection is left for the server to close."""
    p = Peer(port, source)
    try:
        if kind == "garbage":
            p.send(b"GET / HTTP/1.1\r\n\r\n" + os.urandom(2000))
            p.wait_closed()
            return
        p.handshake()
        if kind == "amf_depth_100k":
            p.send(message(3, 20, 0, amf_str("connect") + amf_num(1) + b"\x0a\0\0\0\x01" * 100_000))
        elif kind == "amf_depth_10k":
            p.send(message(3, 20, 0, amf_str("connect") + amf_num(1) + b"\x0a\0\0\0\x01" * 10_000 + b"\x05"))
        elif kind == "few_values":
            p.send(message(3, 20, 0, amf_str("connect")))
        elif kind == "chunk_streams":
            p.send(b"".join(bytes([c, 0, 0, 0, 0, 0, 1, 9, 1, 0, 0, 0, 0x17]) for c in range(3, 60)))
        elif kind == "interleaved":
            p.send(bytes([4, 0, 0, 0, 0, 1, 0, 20, 0, 0, 0, 0]) + b"\x05" * 128
                   + bytes([4, 0, 0, 0, 0, 0, 4, 20, 0, 0, 0, 0]) + b"\x05" * 4)
        elif kind == "huge_message":
            p.send(bytes([3, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0]) + os.urandom(4096))
        elif kind == "picture_size":
            p.send(message(3, 20, 0, CONNECT))
            if not p.read_until(b"Connect.Success"):
                return
            p.send(message(3, 20, 0, amf_str("createStream") + amf_num(2) + b"\x05"))
            p.send(message(4, 20, 1, amf_str("publish") + amf_num(0) + b"\x05" + amf_str(hostile_key)
                           + amf_str("live")))
            if not p.read_until(b"Publish.Start"):
                return
            s = sps(16384, 16384)
            record = bytes([1, 66, 0, 40, 0xFF, 0xE1]) + struct.pack(">H", len(s)) + s + b"\x01\x00\x04\x68\xce\x3c\x80"
            p.send(message(6, 9, 1, b"\x17\0\0\0\0" + record))
        p.wait_closed()
    finally:
        p.close()


KINDS = ["garbage", "amf_depth_100k", "amf_depth_10k", "few_values", "chunk_streams", "interleaved",
         "huge_message", "picture_size"]
# Which server counter each kind should move.
COUNTED_AS = {"garbage": "handshake", "amf_depth_100k": "message_size", "amf_depth_10k": "amf_depth",
              "few_values": "protocol", "chunk_streams": "chunk_streams", "interleaved": "chunk_stream",
              "huge_message": "message_size", "picture_size": "picture_size"}


def metrics(http_port):
    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'media_analyzer_rtmp_(\w+?)(?:\{kind="(\w+)"\})? (\d+)$', line)
        if m:
            out[m.group(2) or m.group(1)] = int(m.group(3))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--publishers", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--attackers", type=int, default=4, help="hostile threads, each from its own address")
    ap.add_argument("--flood", type=int, default=200, help="idle connections opened per flood burst")
    args = ap.parse_args()
    clip = make_clip(args.cache)
    with tempfile.TemporaryDirectory(prefix="ma-hostile-") as work:
        server = MediaAnalyzer(args.binary, work, args.publishers + 1)
        hostile_key = server.keys[-1][0]
        server.start()
        time.sleep(1.5)
        pids = server.pids()
        idle_rss, cpu0 = rss_bytes(pids), cpu_seconds(pids)
        started, publishers = [], []
        for i in range(args.publishers):
            started.append(time.time())
            publishers.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re", "-stream_loop", "-1",
                 "-i", clip, "-t", str(args.seconds), "-c", "copy", "-f", "flv", server.url(i)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        stop = threading.Event()
        attempts = {k: 0 for k in KINDS + ["flood"]}
        lock = threading.Lock()

        def attacker(index):
            source = f"127.0.0.{2 + index % 8}"
            rng = random.Random(index)
            while not stop.is_set():
                kind = rng.choice(KINDS + ["flood"])
                try:
                    if kind == "flood":
                        socks = []
                        for _ in range(args.flood):
                            try:
                                s = socket.socket()
                                s.bind((source, 0))
                                s.settimeout(1)
                                s.connect(("127.0.0.1", server.rtmp))
                                socks.append(s)
                            except OSError:
                                break
                        time.sleep(0.5)
                        for s in socks:
                            s.close()
                    else:
                        attack(kind, server.rtmp, source, hostile_key)
                except (OSError, ConnectionError):
                    pass
                with lock:
                    attempts[kind] += 1
                time.sleep(0.05)

        threads = [threading.Thread(target=attacker, args=(i,), daemon=True) for i in range(args.attackers)]
        for t in threads:
            t.start()
        seen = [dict() for _ in range(args.publishers)]
        cumulative = [0.0] * args.publishers
        peak_rss = idle_rss
        t_end = time.time() + args.seconds + 8
        while time.time() < t_end:
            now = time.time()
            for i in range(args.publishers):
                for name, dur in read_segments(server.playlist(i)):
                    if name not in seen[i]:
                        cumulative[i] += dur
                        seen[i][name] = now
            peak_rss = max(peak_rss, rss_bytes(server.pids()))
            if time.time() > started[0] + args.seconds:
                stop.set()
            if all(p.poll() is not None for p in publishers) and time.time() > t_end - 5:
                break
            time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        counted = metrics(server.http)
        end_rss = rss_bytes(server.pids())
        cpu = cpu_seconds(server.pids()) - cpu0
        for p in publishers:
            if p.poll() is None:
                p.kill()
        server.stop()
    lost = [max(0.0, args.seconds - c) for c in cumulative]
    print(f"\nHostile load, {args.seconds} s: {args.publishers} good 1080p30 publishers (ffmpeg -c copy), "
          f"{args.attackers} hostile peers from {min(args.attackers, 8)} addresses; {os.cpu_count()} cores\n")
    print("| good publisher | media published (s) | media in playlist (s) | lost (s) |")
    print("|---|---|---|---|")
    for i in range(args.publishers):
        print(f"| {i} | {args.seconds} | {cumulative[i]:.1f} | {lost[i]:.1f} |")
    print(f"\nserver RSS: idle {idle_rss / 1e6:.1f} MB, peak {peak_rss / 1e6:.1f} MB, end {end_rss / 1e6:.1f} MB; "
          f"CPU {100 * cpu / args.seconds:.0f} % of a core")
    print("\n| hostile kind | attempts | server counter | counted |")
    print("|---|---|---|---|")
    for kind in KINDS:
        counter = COUNTED_AS[kind]
        print(f"| {kind} | {attempts[kind]} | violations{{kind=\"{counter}\"}} | {counted.get(counter, 0)} |")
    print(f"| flood ({args.flood} idle sockets) | {attempts['flood']} | rate_limited / evicted | "
          f"{counted.get('rate_limited_total', 0)} / {counted.get('evicted_total', 0)} |")
    print(f"\nconnections accepted {counted.get('connections_total', 0)}, panics {counted.get('panics_total', 0)}")


if __name__ == "__main__":
    main()

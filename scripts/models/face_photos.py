#!/usr/bin/env python3
"""Extract the face photos for `media-analyzer bench faces` from their downloaded archives.

    face_photos.py --cache CACHE

Reads scripts/models/face_photos.json, checks each archive's and each photo's sha256, writes the photos
to CACHE/fixtures/faces/ and CACHE/fixtures/faces/faces.json (name, file, faces, source, licence).
Every file is written under a temporary name and renamed; a rerun re-extracts only what is missing or
wrong. Exit status 1 with a message when an archive is missing or a file differs from its pin.
"""
import argparse
import json
import os
import sys
import tarfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from prepare import atomic_write as write, sha256_bytes as sha256, sha256_file  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cache", required=True)
    a = ap.parse_args(argv)
    spec = json.load(open(os.path.join(HERE, "face_photos.json")))
    out_dir = os.path.join(a.cache, "fixtures", "faces")
    os.makedirs(out_dir, exist_ok=True)
    archives = {}
    for key, arch in spec["archives"].items():
        path = os.path.join(a.cache, "downloads", arch["file"])
        if not os.path.exists(path):
            sys.exit(f"face photos: {path} is missing: run scripts/fetch-models --face-photos")
        got = sha256_file(path)
        if got != arch["sha256"]:
            sys.exit(f"face photos: {path} has sha256 {got}, expected {arch['sha256']}: delete it and rerun")
        archives[key] = path
    listed = []
    opened = {}
    for photo in spec["photos"]:
        ext = os.path.splitext(photo["member"])[1]
        dest = os.path.join(out_dir, photo["name"] + ext)
        if not (os.path.exists(dest) and sha256_file(dest) == photo["sha256"]):
            key = photo["archive"]
            if key not in opened:
                opened[key] = tarfile.open(archives[key], "r:*")
            member = opened[key].extractfile(photo["member"])
            if member is None:
                sys.exit(f"face photos: {archives[key]} has no {photo['member']}")
            data = member.read()
            if sha256(data) != photo["sha256"]:
                sys.exit(f"face photos: {photo['member']} has sha256 {sha256(data)}, expected {photo['sha256']}")
            write(dest, data)
        arch = spec["archives"][photo["archive"]]
        listed.append({
            "name": photo["name"], "file": os.path.basename(dest), "faces": photo["faces"],
            "source": f"{arch['what']}: {photo['member']}", "licence": arch["licence"],
        })
    write(os.path.join(out_dir, "faces.json"), (json.dumps({"photos": listed}, indent=1) + "\n").encode())
    faces = sum(len(p["faces"]) for p in listed)
    print(f"face photos: {len(listed)} photos, {faces} faces in {out_dir}")


if __name__ == "__main__":
    main()

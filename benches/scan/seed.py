#!/usr/bin/env python3
"""Pushes REPOS repositories x TAGS tags into a registry through the
distribution HTTP API (no Docker): one small OCI image per repository,
tagged TAGS times. Usage: seed.py HOST:PORT REPOS TAGS"""

import hashlib
import http.client
import json
import sys
import threading


def push_repository(addr, name, tags):
    conn = http.client.HTTPConnection(addr, timeout=30)

    def request(method, url, body=b"", headers=None):
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        r = request("POST", f"/v2/{name}/blobs/uploads/")
        assert r.status == 202, (name, r.status)
        location = r.getheader("Location")
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        sep = "&" if "?" in location else "?"
        r = request("PUT", f"{location}{sep}digest={digest}", data,
                    {"Content-Type": "application/octet-stream"})
        assert r.status == 201, (name, r.status)
        return digest

    config = json.dumps({"architecture": "amd64", "os": "linux", "repo": name}).encode()
    layer = f"layer of {name}".encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": blob(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": blob(layer), "size": len(layer)}],
    }).encode()
    for i in range(tags):
        tag = f"{i // 100}.{(i // 10) % 10}.{i % 10}" if i % 5 else f"build-{i}"
        r = request("PUT", f"/v2/{name}/manifests/{tag}", manifest,
                    {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
        assert r.status == 201, (name, tag, r.status)
    conn.close()


def main():
    addr, repos, tags = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    names = [f"bench/app{i:03d}" for i in range(repos)]
    errors = []

    def worker(chunk):
        try:
            for name in chunk:
                push_repository(addr, name, tags)
        except Exception as e:  # reported below; the run fails
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(names[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        sys.exit(f"seeding failed: {errors[0]}")


if __name__ == "__main__":
    main()

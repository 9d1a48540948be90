#!/usr/bin/env python3
"""Pushes one small OCI image to a registry under the given tags, through
the distribution HTTP API (no Docker). Prints the manifest digest.
Usage: push-tags.py HOST:PORT REPOSITORY TAG..."""

import hashlib
import http.client
import json
import sys


def main():
    addr, name, tags = sys.argv[1], sys.argv[2], sys.argv[3:]
    conn = http.client.HTTPConnection(addr, timeout=30)

    def request(method, url, body=b"", headers=None):
        conn.request(method, url, body=body, headers=headers or {})
        response = conn.getresponse()
        response.read()
        if response.status >= 300 and response.status != 202:
            sys.exit(f"{method} {url}: HTTP {response.status}")
        return response

    def blob(data):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        location = request("POST", f"/v2/{name}/blobs/uploads/").getheader("Location")
        if location.startswith("http"):
            location = "/" + location.split("/", 3)[3]
        sep = "&" if "?" in location else "?"
        request("PUT", f"{location}{sep}digest={digest}", data, {"Content-Type": "application/octet-stream"})
        return digest

    config = json.dumps({"architecture": "amd64", "os": "linux"}).encode()
    layer = f"layer of {name}".encode()
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": blob(layer), "size": len(layer)}],
    }).encode()
    for tag in tags:
        request("PUT", f"/v2/{name}/manifests/{tag}", manifest,
                {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    print("sha256:" + hashlib.sha256(manifest).hexdigest())


if __name__ == "__main__":
    main()

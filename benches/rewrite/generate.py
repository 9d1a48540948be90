#!/usr/bin/env python3
"""Writes DIR with FILES Deployment manifests of about 2 KB each; every
MARK_EVERY-th (default 10) has a setter marker over POLICIES policies, and
with SIDECAR (default 1) every other marked file a second one. Images are
IMAGE_PREFIX/app-N (default ghcr.io/acme).
Usage: generate.py DIR [FILES] [POLICIES] [MARK_EVERY] [SIDECAR] [IMAGE_PREFIX]"""

import os
import sys

root = sys.argv[1]
files = int(sys.argv[2]) if len(sys.argv) > 2 else 10000
policies = int(sys.argv[3]) if len(sys.argv) > 3 else 50
mark_every = int(sys.argv[4]) if len(sys.argv) > 4 else 10
sidecar = (sys.argv[5] != "0") if len(sys.argv) > 5 else True
prefix = sys.argv[6] if len(sys.argv) > 6 else "ghcr.io/acme"

for i in range(files):
    directory = os.path.join(root, f"team{i // 100:03d}")
    os.makedirs(directory, exist_ok=True)
    marked = i % mark_every == 0
    policy = f"app-{(i // mark_every) % policies if marked else i % policies}"
    image = f"{prefix}/{policy}:1.0.0"
    marker = f' # {{"$imagepolicy": "apps:{policy}"}}' if marked else ""
    sidecar_marker = f' # {{"$imagepolicy": "apps:{policy}:tag"}}' if sidecar and marked and i % (2 * mark_every) == 0 else ""
    env = "".join(
        f"            - name: SETTING_{k}\n              value: \"value-{i}-{k}\"\n" for k in range(18)
    )
    text = f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: service-{i}
  namespace: team{i // 100:03d}
  labels:
    app.kubernetes.io/name: service-{i}
    app.kubernetes.io/part-of: fleet
  annotations:
    fleet.example.com/owner: "team {i // 100}"
spec:
  replicas: 2
  selector:
    matchLabels:
      app.kubernetes.io/name: service-{i}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: service-{i}
    spec:
      containers:
        - name: app
          image: {image}{marker}
          ports:
            - containerPort: 8080
          env:
{env}          resources:
            requests: {{cpu: 100m, memory: 128Mi}}
        - name: sidecar
          image: ghcr.io/acme/sidecar
          args: ["--tag", 1.0.0]
          tag: 1.0.0{sidecar_marker}
"""
    with open(os.path.join(directory, f"service-{i}.yaml"), "w") as f:
        f.write(text)

#!/usr/bin/env python3
"""The peer a user would otherwise script: for every file with a setter
marker, load it with ruamel.yaml's round-trip mode, set the marked values
(known paths in the generated tree), and dump it back.
Usage: ruamel_peer.py DIR TAG"""

import os
import sys

from ruamel.yaml import YAML

root, tag = sys.argv[1], sys.argv[2]
yaml = YAML()
yaml.preserve_quotes = True
for directory, _, names in os.walk(root):
    for name in names:
        path = os.path.join(directory, name)
        with open(path) as f:
            text = f.read()
        if "$imagepolicy" not in text:
            continue
        doc = yaml.load(text)
        containers = doc["spec"]["template"]["spec"]["containers"]
        image = containers[0]["image"]
        containers[0]["image"] = image.rsplit(":", 1)[0] + ":" + tag
        if ':tag"}' in text:
            containers[1]["tag"] = tag
        with open(path, "w") as f:
            yaml.dump(doc, f)

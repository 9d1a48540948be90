#!/usr/bin/env python3
"""A second floor for the rewrite benchmark: read every file and replace
each one holding a marker atomically (temporary file, rename), unchanged:
the file system work any atomic rewriter must do. Usage: replace_floor.py DIR"""

import os
import sys

for directory, _, names in os.walk(sys.argv[1]):
    for name in names:
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
        if b"$imagepolicy" not in data:
            continue
        temporary = os.path.join(directory, "." + name + ".tmp")
        with open(temporary, "wb") as f:
            f.write(data)
        os.chmod(temporary, os.stat(path).st_mode & 0o7777)
        os.rename(temporary, path)

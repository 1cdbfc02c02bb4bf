#!/usr/bin/python3
"""Ends the maintenance mode configure.py puts the cluster in to restart Patroni under a
running PostgreSQL, once every node's configure.py is done (hooks run in order, so this runs
after all of them). Nothing to do when the cluster is not paused; with several nodes resuming
at once, one of them does it and the others see it done."""

import json
import subprocess
import sys
import time
import urllib.request

CONFIG = "/etc/patroni/config.yml"


def paused():
    with urllib.request.urlopen("http://127.0.0.1:8008/patroni", timeout=5) as r:
        return bool(json.load(r).get("pause"))


def main():
    if not paused():
        return
    out = subprocess.run(
        ["patronictl", "-c", CONFIG, "resume", "--wait"], capture_output=True, text=True, cwd="/"
    )
    deadline = time.monotonic() + 60
    while paused():
        if time.monotonic() > deadline:
            sys.exit(f"patroni is still in maintenance mode: {out.stdout}{out.stderr}".strip())
        time.sleep(1)
    print("maintenance mode ended")


if __name__ == "__main__":
    main()

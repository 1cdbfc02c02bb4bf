#!/usr/bin/python3
"""Ends the maintenance mode configure.py puts the cluster in to restart Patroni under a
running PostgreSQL, once every node's configure.py is done (hooks run in order, so this runs
after all of them). Nothing to do when the cluster is not paused; with several nodes resuming
at once, one of them does it and the others see it done. Patroni's REST API is asked at its
private address with its credentials, both from Patroni's configuration (as patronictl
does)."""

import base64
import json
import subprocess
import sys
import time
import urllib.request

import yaml

CONFIG = "/etc/patroni/config.yml"


def paused(restapi):
    auth = restapi["authentication"]
    token = base64.b64encode(f"{auth['username']}:{auth['password']}".encode()).decode()
    request = urllib.request.Request(
        f"http://{restapi['connect_address']}/patroni", headers={"Authorization": f"Basic {token}"}
    )
    with urllib.request.urlopen(request, timeout=5) as r:
        return bool(json.load(r).get("pause"))


def main():
    with open(CONFIG) as f:
        restapi = yaml.safe_load(f)["restapi"]
    if not paused(restapi):
        return
    out = subprocess.run(
        ["patronictl", "-c", CONFIG, "resume", "--wait"], capture_output=True, text=True, cwd="/"
    )
    deadline = time.monotonic() + 60
    while paused(restapi):
        if time.monotonic() > deadline:
            sys.exit(f"patroni is still in maintenance mode: {out.stdout}{out.stderr}".strip())
        time.sleep(1)
    print("maintenance mode ended")


if __name__ == "__main__":
    main()

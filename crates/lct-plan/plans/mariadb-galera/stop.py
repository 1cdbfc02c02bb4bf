#!/usr/bin/python3
"""Stops MariaDB on this Galera node after every member with a higher index has stopped
(`stopping` event: all nodes run this at once), so the first node leaves last and Galera
marks its data safe_to_bootstrap; on `started`, configure.py bootstraps from it."""

import json
import os
import re
import socket
import subprocess
import sys
import time


def index(name):
    match = re.search(r"(\d+)$", name)
    return int(match.group(1)) if match else 0


def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    cluster = os.environ["LCT_CLUSTER"]
    me = socket.gethostname()
    later = [n["private_ipv4"][0] for n in lines
             if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "db" and index(n["name"]) > index(me)]
    deadline = time.monotonic() + 120
    while any(listens(address) for address in later):
        if time.monotonic() > deadline:
            sys.exit("members with a higher index still run Galera after 120s")
        time.sleep(1)
    subprocess.run(["systemctl", "stop", "mariadb"], check=True)
    print(f"{me}: stopped after {len(later)} later member(s)")


def listens(address):
    try:
        socket.create_connection((address, 4567), 2).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Configures this ZooKeeper server from lct's inventory (JSON lines on stdin).

The ensemble is every node of this cluster's `server` group; a server's id (myid) is the
number its name ends with (zk-3 is server 3), so ids stay put when the ensemble grows or
shrinks. zoo.cfg is rewritten only when it changes; then the server restarts (all servers
of a changed ensemble restart together: a short pause in service, not a data loss).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time

CONF = "/etc/zookeeper/conf"


def main():
    cluster = os.environ["LCT_CLUSTER"]
    records = [json.loads(line) for line in sys.stdin if line.strip()]
    servers = {}
    for n in records:
        if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "server":
            match = re.search(r"(\d+)$", n["name"])
            if not match:
                sys.exit(f"{n['name']}: a server's name ends with its number")
            servers[int(match.group(1))] = n["private_ipv4"][0]
    me = socket.gethostname()
    match = re.search(r"(\d+)$", me)
    if not match or int(match.group(1)) not in servers:
        sys.exit(f"{me} is not a server of {cluster}")
    myid = int(match.group(1))

    lines = [
        "# Written by lct (zookeeper plan): the ensemble from the inventory.",
        "tickTime=2000",
        "initLimit=10",
        "syncLimit=5",
        "dataDir=/var/lib/zookeeper",
        "clientPort=2181",
        "maxClientCnxns=60",
        "quorumListenOnAllIPs=true",
        "4lw.commands.whitelist=srvr,stat,ruok,mntr,conf",
        "admin.enableServer=false",
    ]
    if len(servers) > 1:
        lines += [f"server.{i}={addr}:2888:3888" for i, addr in sorted(servers.items())]
    config = "\n".join(lines) + "\n"
    changed = write(f"{CONF}/zoo.cfg", config)
    changed |= write(f"{CONF}/myid", f"{myid}\n")
    active = subprocess.run(["systemctl", "is-active", "--quiet", "zookeeper"]).returncode == 0
    if changed or not active:
        subprocess.run(["systemctl", "enable", "--quiet", "zookeeper"], check=False)
        subprocess.run(["systemctl", "restart", "zookeeper"], check=True)
    wait_serving()
    print(f"server {myid} of {len(servers)}: {'restarted' if changed or not active else 'unchanged'}")


def write(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    tmp = f"{path}.lct-tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


def wait_serving(timeout=90):
    """Until the server answers `ruok` (it listens; the quorum may still be forming)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", 2181), timeout=2) as s:
                s.sendall(b"ruok")
                if s.recv(16) == b"imok":
                    return
        except OSError:
            pass
        time.sleep(0.5)
    sys.exit("zookeeper does not answer on port 2181")


if __name__ == "__main__":
    main()

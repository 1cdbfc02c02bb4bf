#!/usr/bin/python3
"""Configures this ZooKeeper server from lct's inventory (JSON lines on stdin).

The ensemble is every node of this cluster's `server` group; a server's id (myid) is the
number its name ends with (zk-3 is server 3), so ids stay put when the ensemble grows or
shrinks. Every port binds to the server's private address: clients (clientPortAddress; all
addresses only with the plan's `listen_public`), the quorum and election ports (the
server's own line of the server list, quorumListenOnAllIPs=false); the admin server (Jetty)
is off. zoo.cfg is rewritten only when it changes; then the server restarts (all servers
of a changed ensemble restart together: a short pause in service, not a data loss), and the
hook ends when the server serves again (a quorum has elected a leader). An ensemble spread
over regions (its servers' records name several) lists its servers by name, which lct-hosts
resolves from each server to an address that works from there (its mesh address in another
region), its own line by its mesh address (what it tells the servers it connects to, where
they connect back), and listens on every address.
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
    names = {}
    regions = set()
    for n in records:
        if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "server":
            match = re.search(r"(\d+)$", n["name"])
            if not match:
                sys.exit(f"{n['name']}: a server's name ends with its number")
            servers[int(match.group(1))] = n["private_ipv4"][0]
            names[int(match.group(1))] = n["name"]
            regions.add(n.get("region", ""))
    me = socket.gethostname()
    match = re.search(r"(\d+)$", me)
    if not match or int(match.group(1)) not in servers:
        sys.exit(f"{me} is not a server of {cluster}")
    myid = int(match.group(1))
    private = servers[myid]
    public = os.environ.get("LCT_PARAM_LISTEN_PUBLIC") == "true"
    # Servers in several regions reach each other by name: /etc/hosts names another
    # region's server by its mesh address (the mesh-sync action), which arrives on the mesh
    # interface, so the ports listen on every address (the firewall decides who).
    spread = len(regions) > 1
    client_address = "0.0.0.0" if public or spread else private
    if spread:
        servers = names
        # Its own line is the address the others reach it at, its mesh address: a server
        # sends its own line's address when it connects, and a server of a higher id
        # connects back there. Its name resolves here to its private address, which in
        # another region is another node's, or that server itself (overlapping ranges).
        own = mesh_address()
        if own:
            servers[myid] = own

    lines = [
        "# Written by lct (zookeeper plan): the ensemble from the inventory.",
        "tickTime=2000",
        "initLimit=10",
        "syncLimit=5",
        "dataDir=/var/lib/zookeeper",
        "clientPort=2181",
        f"clientPortAddress={client_address}",
        "maxClientCnxns=60",
        f"quorumListenOnAllIPs={'true' if spread else 'false'}",
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
    mode = wait_serving(private)
    print(f"server {myid} of {len(servers)}: {'restarted' if changed or not active else 'unchanged'}, {mode}")


def mesh_address():
    """This node's address on lct-mesh's interface (lctmesh0), if it has one."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lctmesh0"], capture_output=True, text=True)
    match = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", out.stdout) if out.returncode == 0 else None
    return match.group(1) if match else None


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


def wait_serving(address, timeout=120):
    """Until the server serves at `address`: `srvr` names its mode (leader, follower,
    standalone), which for an ensemble means a quorum has formed and elected a leader."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((address, 2181), timeout=2) as s:
                s.sendall(b"srvr")
                answer = s.makefile().read()
            mode = [line[6:] for line in answer.splitlines() if line.startswith("Mode: ")]
            if mode:
                return mode[0]
            last = answer.strip() or "an empty answer"
        except OSError as e:
            last = str(e)
        time.sleep(0.5)
    sys.exit(f"zookeeper does not serve after {timeout}s: {last}")


if __name__ == "__main__":
    main()

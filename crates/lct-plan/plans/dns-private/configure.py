#!/usr/bin/python3
"""Runs lct-dns as this node's DNS server (the dns-private plan).

Makes the update key once (`lct-dns keygen`, 0600, never leaves the node), the first zones
from the inventory on standard input (`lct-dns zone`: SOA, NS, the nodes, reverse zones),
the configuration (listen on the node's private and public addresses, the internal prefix,
the key as a systemd credential), and starts lct-dns.service (the unit `install` put
there: a dynamic user with only CAP_NET_BIND_SERVICE), or reloads it when the
configuration changed. Later changes arrive as signed updates (the `dns` action).
"""

import hashlib
import json
import os
import socket
import subprocess
import sys

ETC = "/etc/lct"
KEY = f"{ETC}/lct-update.key"
ZONES = f"{ETC}/zones.jsonl"
CONFIG = f"{ETC}/dns.toml"
DROPIN = "/etc/systemd/system/lct-dns.service.d/lct.conf"


def main():
    lines = [line for line in sys.stdin if line.strip()]
    records = [json.loads(line) for line in lines]
    me = socket.gethostname()
    node = next((n for n in records if n.get("kind") == "node" and n["name"] == me), None)
    if node is None:
        sys.exit(f"{me} is not in the inventory")
    domain = os.environ["LCT_PARAM_DOMAIN"]
    internal = os.environ["LCT_PARAM_INTERNAL"]
    private = node["private_ipv4"][0]
    listen = [f"{private}:53"] + [f"{a}:53" for a in node.get("public_ipv4", [])[:1]]
    os.makedirs(ETC, exist_ok=True)
    if not os.path.exists(KEY):
        subprocess.run(["lct-dns", "keygen", "lct-update", "--out", KEY], check=True, stdout=subprocess.DEVNULL)
    if not os.path.exists(ZONES):
        nodes = "".join(line for line, r in zip(lines, records) if r.get("kind") == "node")
        zone = subprocess.run(
            ["lct-dns", "zone", "--domain", domain, "--parent-domain", domain, "--ns", f"ns1.{domain}={private}"],
            input=nodes, capture_output=True, text=True, check=True,
        )
        write(ZONES, zone.stdout, 0o644)
    config = (
        "# Written by lct (dns-private plan).\n"
        f'records = "{ZONES}"\n'
        f"listen = {json.dumps(listen)}\n"
        f"internal = {json.dumps([internal])}\n"
        'keys = ["lct-update.key"]\n'
        'state = "/var/lib/lct/dns"\n'
    )
    changed = write(CONFIG, config, 0o644)
    changed |= write(DROPIN, "[Service]\nLoadCredential=lct-update.key:" + KEY + "\n", 0o644)
    # A new lct-dns or unit (install put it there) restarts the server too.
    digest = hashlib.sha256()
    for path in ("/usr/local/bin/lct-dns", "/etc/systemd/system/lct-dns.service"):
        with open(path, "rb") as f:
            digest.update(f.read())
    changed |= write(f"{ETC}/dns.installed", digest.hexdigest() + "\n", 0o644)
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    active = subprocess.run(["systemctl", "is-active", "--quiet", "lct-dns"]).returncode == 0
    if not active:
        subprocess.run(["systemctl", "enable", "--now", "--quiet", "lct-dns"], check=True)
    elif changed:
        subprocess.run(["systemctl", "restart", "lct-dns"], check=True)
    print(f"lct-dns on {', '.join(listen)} for {domain}: {'started' if not active else 'restarted' if changed else 'unchanged'}")


def write(path, text, mode):
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.lct-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return True


if __name__ == "__main__":
    main()

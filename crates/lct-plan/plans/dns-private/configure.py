#!/usr/bin/python3
"""Runs lct-dns as this node's DNS server (the dns-private plan): the first node of the group
the primary, the second its secondary.

Standard input: the plan-secrets line (the transfer key's secret), then the inventory.
The primary makes the update key once (`lct-dns keygen`, 0600, never leaves the node), the
first zones from the inventory (`lct-dns zone`: SOA, NS, the nodes, reverse zones), and a
configuration: listen on the node's private address and (the plan's `listen_public`, on by
default) its public one, split-horizon for the
internal prefix, the secondary's key allowed to transfer the internal view from the
secondary's address only, and told of every change (NOTIFY). The secondary follows each of
those zones from the primary with the same key, listens on its private address, and answers
the internal prefix only. Keys are systemd credentials; the unit (`install` put it there)
runs as a dynamic user with only CAP_NET_BIND_SERVICE; it is started, or restarted when its
configuration changed. Later changes arrive at the primary as signed updates (the `dns`
action) and reach the secondary by NOTIFY and IXFR.

The plan's `dnssec` (off, on, ed25519) signs the zone at the primary (`[dnssec]`: the key is
made in the state directory the first time); the secondary keeps and serves the signatures it
transfers. Its `stats` serves the statistics on each node's private address, port 9153.
"""

import base64

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


XFR_KEY = f"{ETC}/lct-transfer.key"


def main():
    lines = [line for line in sys.stdin if line.strip()]
    records = [json.loads(line) for line in lines]
    secrets = next((r for r in records if r.get("kind") == "plan-secrets"), {}).get("parameters", {})
    me = socket.gethostname()
    cluster = os.environ["LCT_CLUSTER"]
    members = sorted(
        (n for n in records if n.get("kind") == "node" and n.get("cluster") == cluster and n.get("group") == "ns"),
        key=lambda n: n["name"],
    )
    node = next((n for n in members if n["name"] == me), None)
    if node is None:
        sys.exit(f"{me} is not a node of {cluster}")
    domain = os.environ["LCT_PARAM_DOMAIN"]
    internal = os.environ["LCT_PARAM_INTERNAL"]
    private = node["private_ipv4"][0]
    primary = members[0]
    primary_private = primary["private_ipv4"][0]
    secondary = members[1] if len(members) > 1 else None
    dnssec = os.environ.get("LCT_PARAM_DNSSEC", "off")
    if dnssec not in ("off", "on", "ed25519"):
        sys.exit(f"parameter dnssec: {dnssec!r} is not one of off, on, ed25519")
    stats = os.environ.get("LCT_PARAM_STATS") == "true"
    os.makedirs(ETC, exist_ok=True)
    # The transfer key: the same secret on both nodes, from the plan's generated parameter.
    secret = base64.b64encode(hashlib.sha256(secrets["transfer_secret"].encode()).digest()).decode()
    write(XFR_KEY, f'key "lct-transfer" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n', 0o600)
    nodes = "".join(line for line, r in zip(lines, records) if r.get("kind") == "node")
    zone_args = ["lct-dns", "zone", "--domain", domain, "--parent-domain", domain, "--ns", f"ns1.{domain}={primary_private}"]
    if node is primary:
        listen = [f"{private}:53"]
        if os.environ.get("LCT_PARAM_LISTEN_PUBLIC") == "true":
            # The public view is for the outside: the plan's flows open it to every address.
            listen += [f"{a}:53" for a in node.get("public_ipv4", [])[:1]]
        if not os.path.exists(KEY):
            subprocess.run(["lct-dns", "keygen", "lct-update", "--out", KEY], check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(ZONES):
            zone = subprocess.run(zone_args, input=nodes, capture_output=True, text=True, check=True)
            write(ZONES, zone.stdout, 0o644)
        config = (
            "# Written by lct (dns-private plan): the primary.\n"
            f'records = "{ZONES}"\n'
            f"listen = {json.dumps(listen)}\n"
            f"internal = {json.dumps([internal])}\n"
            'keys = ["lct-update.key"]\n'
            'state = "/var/lib/lct/dns"\n'
        )
        if secondary is not None:
            address = secondary["private_ipv4"][0]
            config += (
                "\n[[secondary]]\n"
                'key = "lct-transfer.key"\n'
                'view = "internal"\n'
                f'notify = ["{address}:53"]\n'
                f'allow = ["{address}/32"]\n'
            )
        if dnssec != "off":
            config += f'\n[dnssec]\n"{domain}" = "{dnssec}"\n'
        credentials = [("lct-update.key", KEY), ("lct-transfer.key", XFR_KEY)]
        role = "primary"
    else:
        # The zones the primary serves: those the same inventory makes.
        zone = subprocess.run(zone_args, input=nodes, capture_output=True, text=True, check=True)
        zones = sorted({json.loads(line)["zone"] for line in zone.stdout.splitlines() if line.strip()})
        write(ZONES, "", 0o644)
        config = (
            "# Written by lct (dns-private plan): a secondary, for the internal prefix only.\n"
            f'records = "{ZONES}"\n'
            f'listen = ["{private}:53"]\n'
            f"internal = {json.dumps([internal])}\n"
            'state = "/var/lib/lct/dns"\n'
            "\n[modes]\n" + "".join(f'"{z}" = "private"\n' for z in zones)
        )
        for z in zones:
            config += f'\n[[primary]]\nzone = "{z}"\naddress = "{primary_private}:53"\nkey = "lct-transfer.key"\n'
        credentials = [("lct-transfer.key", XFR_KEY)]
        role = "secondary"
    if stats:
        config += f'\n[stats]\nlisten = "{private}:9153"\n'
    changed = write(CONFIG, config, 0o644)
    dropin = "[Service]\n" + "".join(f"LoadCredential={name}:{path}\n" for name, path in credentials)
    changed |= write(DROPIN, dropin, 0o644)
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
    state = "started" if not active else "restarted" if changed else "unchanged"
    print(f"lct-dns ({role}) on {private} for {domain}: {state}")


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

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

Across regions (lct-mesh): the `dns` action runs this file again on the primary, kept at
/usr/local/lib/lct/dns-private.py, as `regions --region=PROVIDER:REGION
--mesh-address=NODE=IPV4...` with the inventory on standard input (see `regions`): the
primary then also listens on its mesh address, answers its public address with the external
view whatever the source (`public`), counts its own region's members' mesh addresses as
internal, and answers each other region from that region's view (`[[region]]`: `lct-dns zone
--region`, the region's members' mesh addresses as `clients`). What it rendered from is kept
in /etc/lct/dns-private.json and dns-mesh.json, so a later configure keeps the region views.
A secondary in the primary's region transfers the primary's own view; one in another region
(the plan's `servers` over a group spread with `regions`) transfers that region's view with
a key of that region's (HMAC-SHA256 of the region's name under the transfer secret; it keeps
no other key), from the primary's mesh address (its hosts file's name for the primary), hears
NOTIFY on its own mesh address, and answers its region's private range only. `regions` on the
primary gives each such region a `[[secondary]]` (its key, `region`, its servers' mesh
addresses), the key as one more credential of the unit (a restart).

The plan's `dnssec` (off, on, ed25519) signs the zone at the primary (`[dnssec]`: the key is
made in the state directory the first time); the secondary keeps and serves the signatures it
transfers. Its `stats` serves the statistics on each node's private address, port 9153.
"""

import base64

import hashlib
import hmac
import json
import os
import re
import socket
import stat
import subprocess
import sys
import time

ETC = "/etc/lct"
KEY = f"{ETC}/lct-update.key"
ZONES = f"{ETC}/zones.jsonl"
CONFIG = f"{ETC}/dns.toml"
DROPIN = "/etc/systemd/system/lct-dns.service.d/lct.conf"


XFR_KEY = f"{ETC}/lct-transfer.key"
# This file, kept on the primary for the `dns` action's `regions`.
SELF = "/usr/local/lib/lct/dns-private.py"
# What the primary's configuration is rendered from (the plan's parameters, its addresses).
SETTINGS = "dns-private.json"
# The mesh's part of it, from the last `regions` (absent without a mesh).
MESH = "dns-mesh.json"
# PROVIDER:REGION as lct names them (a region view's file is named after it).
NETWORK = re.compile(r"[a-z][a-z0-9]*:[a-z0-9][a-z0-9-]{0,62}")


def main():
    if sys.argv[1:2] == ["regions"]:
        return regions(sys.argv[2:])
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
    dnssec = os.environ.get("LCT_PARAM_DNSSEC", "off")
    if dnssec not in ("off", "on", "ed25519"):
        sys.exit(f"parameter dnssec: {dnssec!r} is not one of off, on, ed25519")
    stats = os.environ.get("LCT_PARAM_STATS") == "true"
    # The primary's own region's secondary (the internal view); one of another region is
    # that region's secondary (its view, with a key of that region's).
    secondary = next((n for n in members[1:] if network(n) == network(primary)), None)
    os.makedirs(ETC, exist_ok=True)
    # The transfer key: the same secret on the primary and its region's secondary, from the
    # plan's generated parameter; another region's secondary keeps only its region's key.
    secret = base64.b64encode(hashlib.sha256(secrets["transfer_secret"].encode()).digest()).decode()
    if node is primary or network(node) == network(primary):
        write(XFR_KEY, key_text("lct-transfer", secret), 0o600)
    nodes = "".join(line for line, r in zip(lines, records) if r.get("kind") == "node")
    zone_args = ["lct-dns", "zone", "--domain", domain, "--parent-domain", domain, "--ns", f"ns1.{domain}={primary_private}"]
    if node is primary:
        if not os.path.exists(KEY):
            subprocess.run(["lct-dns", "keygen", "lct-update", "--out", KEY], check=True, stdout=subprocess.DEVNULL)
        if not os.path.exists(ZONES):
            zone = subprocess.run(zone_args, input=nodes, capture_output=True, text=True, check=True)
            write(ZONES, zone.stdout, 0o644)
        # The public view is for the outside: the plan's flows open it to every address.
        public = node.get("public_ipv4", [])[:1] if os.environ.get("LCT_PARAM_LISTEN_PUBLIC") == "true" else []
        settings = {
            "node": me,
            "cluster": cluster,
            "domain": domain,
            "internal": internal,
            "private": private,
            "public": public[0] if public else None,
            "secondary": secondary["private_ipv4"][0] if secondary is not None else None,
            "dnssec": dnssec,
            "stats": stats,
            "state": "/var/lib/lct/dns",
        }
        write(f"{ETC}/{SETTINGS}", json.dumps(settings, indent=1) + "\n", 0o644)
        with open(__file__) as f:
            write(SELF, f.read(), 0o755)
        mesh = load(f"{ETC}/{MESH}")
        config = primary_config(ETC, settings, mesh)
        credentials = [("lct-update.key", KEY), ("lct-transfer.key", XFR_KEY)]
        # The region secondaries' keys the kept configuration names (`regions` made them).
        credentials += [(s["key"], f"{ETC}/{s['key']}") for s in (mesh or {}).get("secondaries", [])]
        role = "primary"
    elif network(node) != network(primary):
        config = region_secondary_config(node, primary, domain, internal, secret, zone_args, nodes, stats)
        key_file = f"{ETC}/{region_key_name(network(node))}.key"
        credentials = [(os.path.basename(key_file), key_file)]
        role = f"secondary of region {network(node)}"
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
        if stats:
            config += f'\n[stats]\nlisten = "{private}:9153"\n'
        credentials = [("lct-transfer.key", XFR_KEY)]
        role = "secondary"
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


def region_key_name(net):
    """The TSIG key name of region `net`'s view (`local:b` -> `lct-transfer-local-b`)."""
    return "lct-transfer-" + net.replace(":", "-")


def region_secret(base, net):
    """Region `net`'s transfer secret: HMAC-SHA256 of its name under the transfer key's
    secret (base64), so the primary and that region's secondary make the same one and a
    region's key says nothing of another's."""
    return base64.b64encode(hmac.new(base64.b64decode(base), net.encode(), hashlib.sha256).digest()).decode()


def key_text(name, secret):
    return f'key "{name}" {{\n\talgorithm hmac-sha256;\n\tsecret "{secret}";\n}};\n'


def region_secondary_config(node, primary, domain, internal, base, zone_args, nodes, stats):
    """A secondary in another region than the primary: it transfers its region's view with
    its region's key from the primary's mesh address (what this node's hosts file names the
    primary: the `hosts` action ran after `mesh-sync`), hears NOTIFY on its own mesh address,
    and answers its region's private range (the internal prefix) only."""
    net = network(node)
    if not NETWORK.fullmatch(net):
        # It becomes a key's and a file's name below: lct's grammar, never a path.
        sys.exit(f"{node['name']}: {net!r} is not a private network (PROVIDER:REGION)")
    try:
        address = socket.gethostbyname(primary["name"])
    except OSError as e:
        sys.exit(f"{node['name']}: the primary {primary['name']} has no address here ({e}): a secondary in another region needs the mesh and hosts (mesh-sync, hosts before configure.py)")
    own_mesh = mesh_address()
    if own_mesh is None or address in primary.get("private_ipv4", []) + primary.get("public_ipv4", []):
        sys.exit(
            f"{node['name']} ({net}): the primary {primary['name']} ({network(primary)}) is not reached over the mesh here; "
            "a secondary in another region transfers its region's view over lct-mesh (mesh-sync before configure.py)"
        )
    private = node["private_ipv4"][0]
    name = region_key_name(net)
    write(f"{ETC}/{name}.key", key_text(name, region_secret(base, net)), 0o600)
    zone = subprocess.run(zone_args, input=nodes, capture_output=True, text=True, check=True)
    zones = sorted({json.loads(line)["zone"] for line in zone.stdout.splitlines() if line.strip()})
    write(ZONES, "", 0o644)
    config = (
        f"# Written by lct (dns-private plan): the secondary of region {net}'s view.\n"
        f'records = "{ZONES}"\n'
        f'listen = ["{private}:53", "{own_mesh}:53"]\n'
        f"internal = {json.dumps([internal])}\n"
        'state = "/var/lib/lct/dns"\n'
        "\n[modes]\n" + "".join(f'"{z}" = "private"\n' for z in zones)
    )
    for z in zones:
        config += f'\n[[primary]]\nzone = "{z}"\naddress = "{address}:53"\nkey = "{name}.key"\n'
    if stats:
        config += f'\n[stats]\nlisten = "{private}:9153"\n'
    return config


def mesh_address():
    """This node's address on lct-mesh's interface (lctmesh0), if it has one."""
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "dev", "lctmesh0"], capture_output=True, text=True)
    match = re.search(r"\binet (\d+\.\d+\.\d+\.\d+)/", out.stdout) if out.returncode == 0 else None
    return match.group(1) if match else None


def network(node):
    """The node's private network, PROVIDER:REGION (private addresses are its own)."""
    return f"{node['provider']}:{node['region']}"


def listen_of(settings, mesh):
    """The primary's listen and public addresses: private, mesh (with a mesh), public."""
    listen = [f"{settings['private']}:53"]
    if mesh:
        listen.append(f"{mesh['address']}:53")
    public = [f"{settings['public']}:53"] if settings["public"] else []
    return listen + public, public if mesh else []


def primary_config(etc, settings, mesh):
    """The primary's dns.toml from its settings and, with a mesh, the region views."""
    listen, public = listen_of(settings, mesh)
    # Its own region's askers: its private range and, with a mesh, its members' mesh addresses.
    internal = [settings["internal"]] + (mesh["own_clients"] if mesh else [])
    config = (
        "# Written by lct (dns-private plan): the primary.\n"
        f'records = "{etc}/zones.jsonl"\n'
        f"listen = {json.dumps(listen)}\n"
        f"internal = {json.dumps(internal)}\n"
        + (f"public = {json.dumps(public)}\n" if public else "")
        + 'keys = ["lct-update.key"]\n'
        f"state = {json.dumps(settings['state'])}\n"
    )
    if settings["secondary"]:
        address = settings["secondary"]
        config += (
            "\n[[secondary]]\n"
            'key = "lct-transfer.key"\n'
            'view = "internal"\n'
            f'notify = ["{address}:53"]\n'
            f'allow = ["{address}/32"]\n'
        )
    if settings["dnssec"] != "off":
        config += f'\n[dnssec]\n"{settings["domain"]}" = "{settings["dnssec"]}"\n'
    for secondary in mesh.get("secondaries", []) if mesh else []:
        config += (
            "\n[[secondary]]\n"
            f"key = {json.dumps(secondary['key'])}\n"
            'view = "internal"\n'
            f"region = {json.dumps(secondary['network'])}\n"
            f"notify = {json.dumps([f'{a}:53' for a in secondary['addresses']])}\n"
            f"allow = {json.dumps([f'{a}/32' for a in secondary['addresses']])}\n"
        )
    for region in mesh["regions"] if mesh else []:
        config += (
            "\n[[region]]\n"
            f"network = {json.dumps(region['network'])}\n"
            f"records = {json.dumps(region['records'])}\n"
            f"clients = {json.dumps(region['clients'])}\n"
        )
    if settings["stats"]:
        config += f'\n[stats]\nlisten = "{settings["private"]}:9153"\n'
    return config


def regions(argv):
    """`regions --region=PROVIDER:REGION --mesh-address=NODE=IPV4...` (the `dns` action, on
    the primary; the inventory's node records on standard input): every other region's view
    rendered (`lct-dns zone --region`, this server named by its mesh address there), the
    configuration re-rendered with them, and lct-dns reloaded (restarted when its listen
    addresses changed). `--etc=DIR` and `--no-reload` render elsewhere without touching the
    service (tests)."""
    etc, reload, own, mesh = ETC, True, None, {}
    for arg in argv:
        option, _, value = arg.partition("=")
        if option == "--region":
            own = value
        elif option == "--mesh-address":
            name, _, address = value.partition("=")
            mesh[name] = address
        elif option == "--etc":
            etc = value
        elif arg == "--no-reload":
            reload = False
        else:
            sys.exit(f"regions: unknown argument {arg!r}")
    lines = [line for line in sys.stdin if line.strip()]
    nodes = [json.loads(line) for line in lines]
    nodes = [n for n in nodes if n.get("kind") == "node"]
    settings = load(f"{etc}/{SETTINGS}")
    if settings is None:
        sys.exit(f"regions: no {etc}/{SETTINGS}: this node's lct-dns was not configured as the dns-private primary")
    me = next((n for n in nodes if n["name"] == settings["node"]), None)
    if me is None or network(me) != own:
        sys.exit(f"regions: {settings['node']} is not a node of {own} in the inventory")
    if settings["node"] not in mesh:
        # Not a member yet: nobody of another region could reach it; nothing to serve them.
        print(f"lct-dns on {settings['node']}: not a mesh member yet, no region views")
        return
    if settings["dnssec"] != "off":
        # lct-dns refuses region views of a zone it signs (they would answer unsigned).
        sys.exit("regions: a signed zone (dnssec) cannot have region views yet; the mesh's other regions are not served")
    address = mesh[settings["node"]]
    members = {}
    for n in nodes:
        if n["name"] in mesh:
            members.setdefault(network(n), []).append(f"{mesh[n['name']]}/32")
    domain = settings["domain"]
    mesh_args = [f"--mesh-address={name}={a}" for name, a in sorted(mesh.items())]
    node_lines = "".join(line for line in lines if json.loads(line).get("kind") == "node")
    changed = False
    views = []
    for net, clients in sorted(members.items()):
        if net == own:
            continue
        if not NETWORK.fullmatch(net):
            # It becomes a file name below: lct's grammar, never a path.
            sys.exit(f"regions: {net!r} is not a private network (PROVIDER:REGION)")
        records = f"{etc}/zones-{net.replace(':', '-')}.jsonl"
        argv = ["lct-dns", "zone", f"--domain={domain}", f"--parent-domain={domain}", f"--ns=ns1.{domain}={address}"]
        argv += [f"--region={net}"] + mesh_args
        # The view rendered at its last serial first: the same records are the same file (no
        # reload), whatever second it is; changed ones get a serial that grows.
        kept = kept_serial(records)
        zone = subprocess.run(argv + serial_arg(kept), input=node_lines, capture_output=True, text=True)
        if zone.returncode == 0 and kept is not None and zone.stdout != read_text(records):
            fresh = max(int(time.time()), kept + 1) % 2**32
            zone = subprocess.run(argv + serial_arg(fresh), input=node_lines, capture_output=True, text=True)
        if zone.returncode != 0:
            sys.exit(f"regions: lct-dns zone --region {net}: {zone.stderr.strip()}")
        changed |= write(records, zone.stdout, 0o644)
        views.append({"network": net, "records": records, "clients": sorted(clients)})
    secondaries, keys = region_secondaries(etc, settings, nodes, mesh, {v["network"] for v in views})
    part = {"address": address, "own_clients": sorted(members.get(own, [])), "regions": views, "secondaries": secondaries}
    before = load(f"{etc}/{MESH}")
    # Region keys first, then the configuration naming them: a restart in between finds both.
    for path, text in keys:
        changed |= write(path, text, 0o600)
    write(f"{etc}/{MESH}", json.dumps(part, indent=1) + "\n", 0o644)
    changed |= write(f"{etc}/dns.toml", primary_config(etc, settings, part), 0o644)
    restart = listen_of(settings, before) != listen_of(settings, part)
    if reload:
        # The unit reads keys as credentials: a region's key is one more.
        credentials = [("lct-update.key", KEY), ("lct-transfer.key", XFR_KEY)] + [(os.path.basename(p), p) for p, _ in keys]
        dropin = "[Service]\n" + "".join(f"LoadCredential={name}:{path}\n" for name, path in credentials)
        if write(DROPIN, dropin, 0o644):
            subprocess.run(["systemctl", "daemon-reload"], check=True)
            changed = restart = True
    state = "restarted" if changed and restart else "reloaded" if changed else "unchanged"
    if reload and changed:
        # Listen addresses change only on restart; zones and views on SIGHUP (a reload).
        subprocess.run(["systemctl", "restart" if restart else "reload", "lct-dns"], check=True)
    print(f"lct-dns on {settings['node']}: {len(views)} region views: {state}")


def region_secondaries(etc, settings, nodes, mesh, viewed):
    """The plan's secondaries in other regions, one `[[secondary]]` per region with a view:
    its key (made from the transfer key's secret), notified and allowed at its members'
    mesh addresses. Returns them and the key files to write."""
    cluster = settings.get("cluster")
    by_region = {}
    for n in nodes:
        net = network(n)
        if cluster and n.get("cluster") == cluster and n.get("group") == "ns" and net in viewed and n["name"] in mesh:
            by_region.setdefault(net, []).append(mesh[n["name"]])
    if not by_region:
        return [], []
    base = key_secret(f"{etc}/lct-transfer.key")
    secondaries, keys = [], []
    for net, addresses in sorted(by_region.items()):
        name = region_key_name(net)
        keys.append((f"{etc}/{name}.key", key_text(name, region_secret(base, net))))
        secondaries.append({"network": net, "key": f"{name}.key", "addresses": sorted(addresses)})
    return secondaries, keys


def key_secret(path):
    """The secret of a key file lct wrote (`secret "...";`)."""
    match = re.search(r'secret "([A-Za-z0-9+/=]+)";', read_text(path))
    if match is None:
        sys.exit(f"regions: {path}: no transfer key (configure the primary first)")
    return match.group(1)


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def kept_serial(path):
    """The SOA serial of a view rendered before (None: none yet, or not one lct wrote)."""
    for line in read_text(path).splitlines():
        try:
            record = json.loads(line)
            if record.get("type") == "SOA":
                return int(record["data"].split()[2])
        except (ValueError, IndexError, KeyError, AttributeError):
            return None
    return None


def serial_arg(serial):
    return [] if serial is None else [f"--serial={serial}"]


def read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def write(path, text, mode):
    """Writes `text` to `path` atomically, the file left with exactly `mode` whatever was
    there: a key found unchanged but readable by others is narrowed, and a file left at the
    temporary path (another mode, or a link elsewhere) is never written through. True when
    the text changed."""
    try:
        # Not through a link: a link in its place is replaced below, never read or chmodded.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW)) as f:
            if f.read() == text:
                if stat.S_IMODE(os.fstat(f.fileno()).st_mode) != mode:
                    os.fchmod(f.fileno(), mode)
                return False
    except OSError:
        pass
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.lct-tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    # A file of our own, made here (O_EXCL): its mode is the one given (fchmod: not the umask's).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    with os.fdopen(fd, "w") as f:
        os.fchmod(fd, mode)
        f.write(text)
        f.flush()
        os.fsync(fd)
    os.replace(tmp, path)
    return True


if __name__ == "__main__":
    main()

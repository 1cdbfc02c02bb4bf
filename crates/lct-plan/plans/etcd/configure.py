#!/usr/bin/python3
"""Makes this node an etcd member, from lct's inventory and the plan's secrets (stdin).

Standard input: the plan-secrets line (`ca_key`), then the node records. The members are
the nodes of this cluster's `server` group; each is named by its host name and reached at
its private address (peers on 2380, clients on 2379, nothing else listens).

Certificates: the CA's Ed25519 key is derived from `ca_key` (SHA-256 of a label and the
secret) and its certificate is made with fixed fields; Ed25519 signatures are
deterministic, so every member makes the same CA certificate byte for byte and the CA's
key is never written anywhere. Each member makes its own P-256 key (0600, user etcd) and a
certificate for its private address, host name and FQDN (from /etc/hosts, which the
`hosts` action wrote), usable as server and client: peers require each other's
certificates (peer-client-cert-auth); clients check the server's and show none.

Membership goes through etcd, one member at a time, each step waiting for a healthy cluster:
* created: every node starts with the whole list (initial-cluster-state new);
* node-added: the new nodes, in name order, each wait for the one before, `member add`
  themselves through the existing members, then start with initial-cluster-state existing;
* node-removing (before a scale deletes nodes): the leaving nodes, in name order, `member
  remove` themselves through the members that stay and stop;
* node-removed (the nodes are gone): the first remaining member removes every member the
  inventory no longer has; the others wait until the list is clean.
Every step is idempotent: a re-run after a failure finishes the job.
"""

import datetime
import hashlib
import ipaddress
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import time

PKI = "/etc/etcd/pki"
CA_CERT = f"{PKI}/ca.crt"
CERT = f"{PKI}/member.crt"
KEY = f"{PKI}/member.key"
DEFAULTS = "/etc/default/etcd"
DATA = "/var/lib/etcd/lct"
TIMEOUT = 180
# A host name as lct makes them (a DNS label).
NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    secrets = next(r for r in lines if r.get("kind") == "plan-secrets")["parameters"]
    cluster = os.environ["LCT_CLUSTER"]
    event = os.environ["LCT_EVENT"]
    members = {
        n["name"]: n["private_ipv4"][0]
        for n in lines
        if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "server"
    }
    if event == "dependent-changed":
        push_ca(cluster, make_ca(secrets["ca_key"], cluster)[2], lines)
        return
    me = socket.gethostname()
    if me not in members:
        sys.exit(f"{me} is not a server of {cluster}")
    added = names(os.environ.get("LCT_NODES_ADDED", ""))
    removed = names(os.environ.get("LCT_NODES_REMOVED", ""))
    etcd = Etcd(members[me])
    make_certificates(secrets["ca_key"], members[me])

    if event == "created":
        configure(cluster, me, members[me], {n: peer_url(a) for n, a in members.items()}, "new")
        etcd.wait_healthy([members[me]])
        say = "started with the cluster"
    elif event == "node-added" and me in added:
        existing = [members[n] for n in members if n not in added]
        if not existing:
            sys.exit("no existing member to join through")
        for earlier in sorted(added)[: sorted(added).index(me)]:
            etcd.wait(f"{earlier} to join first", lambda e=earlier: started(etcd.members(existing), e))
        join(cluster, me, members[me], existing, etcd)
        say = f"joined ({len(etcd.members([members[me]]))} members)"
    elif event == "node-removing" and me in removed:
        staying = [members[n] for n in members if n not in removed]
        for earlier in sorted(removed)[: sorted(removed).index(me)]:
            etcd.wait(f"{earlier} to leave first", lambda e=earlier: e not in names_of(etcd.members(staying)))
        leave(me, members[me], staying, etcd)
        say = "left the cluster"
    elif event == "node-removing":
        staying = [members[n] for n in members if n not in removed]
        etcd.wait(f"{','.join(removed)} to leave", lambda: not set(removed) & names_of(etcd.members(staying)))
        etcd.wait_healthy(staying)
        say = f"{len(etcd.members(staying))} members left"
    elif event == "node-removed":
        alive = [members[n] for n in members]
        if me == min(members):
            for m in etcd.members(alive):
                if m.get("name") not in members:
                    etcd.remove(alive, m)
        etcd.wait("the removed members to leave the list", lambda: names_of(etcd.members(alive)) <= set(members))
        etcd.wait_healthy(alive)
        say = f"{len(etcd.members(alive))} members"
    else:
        etcd.wait_healthy([members[me]])
        say = "unchanged"
    print(f"{me}: {event}: {say}")


def names(text):
    return [n for n in text.split(",") if n]


def names_of(member_list):
    return {m.get("name", "") for m in member_list}


def started(member_list, name):
    """Whether `name` is a member that has started (an unstarted member has no name yet)."""
    return name in names_of(member_list)


def peer_url(address):
    return f"https://{address}:2380"


def client_url(address):
    return f"https://{address}:2379"


def join(cluster, me, address, existing, etcd):
    """Adds this node through the existing members (unless it is there already: a re-run),
    then starts it with the member list etcd answered, as part of the existing cluster."""
    etcd.wait_healthy(existing)
    listed = etcd.members(existing)
    mine = next((m for m in listed if peer_url(address) in m.get("peerURLs", [])), None)
    if mine is None:
        if os.path.isdir(DATA):
            # A data directory from an earlier membership: etcd refuses to rejoin with it.
            stop_and_wipe()
        add(me, address, existing, etcd)
        listed = etcd.members(existing)
    configure(cluster, me, address, initial_cluster(listed, me, address), "existing")
    etcd.wait_healthy([address])


def add(me, address, existing, etcd):
    """`member add`, again while etcd says the cluster is unhealthy: it refuses a new member
    until every member has been connected for a few seconds (a member that has just joined
    too), so that the new one cannot cost the quorum."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        out = etcd.ctl(existing, "member", "add", me, f"--peer-urls={peer_url(address)}", check=False)
        if out.returncode == 0:
            return
        if any(peer_url(address) in m.get("peerURLs", []) for m in etcd.members(existing)):
            return  # added, though the answer was lost
        if "unhealthy cluster" not in out.stderr or time.monotonic() > deadline:
            sys.exit(f"etcdctl member add {me}: {out.stderr.strip() or out.stdout.strip()}")
        time.sleep(1)


def initial_cluster(listed, me, address):
    """The members a joining node starts with, from etcd's answer (another node's word):
    each name a host name and each peer URL https://IPV4:2380, or the join is refused, since
    they are written into /etc/default/etcd, where a newline would add a setting of its own."""
    initial = {}
    for m in listed:
        name = m.get("name", "")
        if not name:
            continue  # this node, added but not started yet
        urls = m.get("peerURLs") or [""]
        if not NAME.fullmatch(name) or not is_peer_url(urls[0]):
            sys.exit(f"etcd lists a member that is no host name and peer URL: {name!r} {urls[0]!r}")
        initial[name] = urls[0]
    initial[me] = peer_url(address)
    return initial


def is_peer_url(url):
    if not url.startswith("https://") or not url.endswith(":2380"):
        return False
    try:
        return ipaddress.ip_address(url[len("https://") : -len(":2380")]).version == 4
    except ValueError:
        return False


def leave(me, address, staying, etcd):
    """Removes this node through the members that stay, then stops it."""
    etcd.wait_healthy(staying)
    for m in etcd.members(staying):
        if m.get("name") == me or peer_url(address) in m.get("peerURLs", []):
            etcd.remove(staying, m)
    etcd.wait_healthy(staying)
    stop_and_wipe()


def stop_and_wipe():
    subprocess.run(["systemctl", "disable", "--now", "--quiet", "etcd"], check=False)
    shutil.rmtree(DATA, ignore_errors=True)


def configure(cluster, me, address, initial, state):
    """/etc/default/etcd (read by Debian's etcd.service), then etcd (re)started if it changed
    or does not run. The initial-cluster values matter only to a member without data.
    Peers must show a certificate of the CA; clients need none (etcd 3.4 would require one
    of every client as soon as a CA is set for them: ETCD_TRUSTED_CA_FILE stays unset), so
    that dependents need only the CA's certificate; the firewall decides who reaches 2379."""
    settings = {
        "ETCD_NAME": me,
        "ETCD_DATA_DIR": DATA,
        "ETCD_LISTEN_PEER_URLS": peer_url(address),
        "ETCD_LISTEN_CLIENT_URLS": client_url(address),
        "ETCD_ADVERTISE_CLIENT_URLS": client_url(address),
        "ETCD_INITIAL_ADVERTISE_PEER_URLS": peer_url(address),
        "ETCD_INITIAL_CLUSTER": ",".join(f"{n}={u}" for n, u in sorted(initial.items())),
        "ETCD_INITIAL_CLUSTER_STATE": state,
        "ETCD_INITIAL_CLUSTER_TOKEN": cluster,
        "ETCD_CERT_FILE": CERT,
        "ETCD_KEY_FILE": KEY,
        "ETCD_PEER_CERT_FILE": CERT,
        "ETCD_PEER_KEY_FILE": KEY,
        "ETCD_PEER_TRUSTED_CA_FILE": CA_CERT,
        "ETCD_PEER_CLIENT_CERT_AUTH": "true",
    }
    text = "# Written by lct (etcd plan).\n" + "".join(f"{k}={v}\n" for k, v in settings.items())
    changed = write(DEFAULTS, text.encode(), 0o644)
    active = subprocess.run(["systemctl", "is-active", "--quiet", "etcd"]).returncode == 0
    if changed or not active:
        # Debian's package started a lone etcd on localhost at install: its data goes.
        shutil.rmtree("/var/lib/etcd/default", ignore_errors=True)
        subprocess.run(["systemctl", "enable", "--quiet", "etcd"], check=False)
        # Not waiting here: a member of a new cluster is ready only once a majority runs.
        subprocess.run(["systemctl", "restart", "--no-block", "etcd"], check=True)


def push_ca(cluster, ca_pem, records):
    """On the controller: the CA's certificate (not a secret) onto every node of the
    clusters depending on this one, at /etc/lct/ca/CLUSTER.crt (the offered `ca_file`),
    through `lct-inventory exec` (the certificate and the cluster's name as arguments of a
    fixed script, never in its text)."""
    dependents = sorted({n["name"] for n in records if n.get("kind") == "node" and n["cluster"] != cluster})
    if not dependents:
        print("no dependents")
        return
    script = (
        'set -e; umask 022; mkdir -p /etc/lct/ca; printf "%s" "$2" > "/etc/lct/ca/$1.crt.lct-tmp"; '
        'mv "/etc/lct/ca/$1.crt.lct-tmp" "/etc/lct/ca/$1.crt"'
    )
    argv = ["lct-inventory", "exec", "-o", "jsonl", ",".join(dependents), "--", "sh", "-c", script, "lct-ca"]
    out = subprocess.run(argv + [cluster, ca_pem.decode()], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if out.returncode != 0:
        sys.exit(f"pushing the CA to {','.join(dependents)}: {out.stderr.strip()}")
    print(f"the CA onto {','.join(dependents)}")


def make_ca(seed, cluster):
    """The CA's key, name and certificate (PEM): the same from the same secret, byte for byte."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    from cryptography.x509.oid import NameOID

    ca_key = ed25519.Ed25519PrivateKey.from_private_bytes(
        hashlib.sha256(b"lct etcd plan CA\0" + seed.encode()).digest()
    )
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"lct etcd CA {cluster}")])
    ca_public = ca_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(int.from_bytes(hashlib.sha256(b"serial" + ca_public).digest()[:16], "big") >> 1)
        .not_valid_before(datetime.datetime(2024, 1, 1))
        .not_valid_after(datetime.datetime(2124, 1, 1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .sign(ca_key, None)
    )
    return ca_key, ca_name, ca.public_bytes(serialization.Encoding.PEM)


def make_certificates(seed, address):
    """The CA certificate (the same on every member) and this member's key and certificate
    (made again when its names or the CA changed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(PKI, mode=0o755, exist_ok=True)
    ca_key, ca_name, ca_pem = make_ca(seed, os.environ["LCT_CLUSTER"])
    ca_changed = write(CA_CERT, ca_pem, 0o644)

    hosts = host_names(address)
    sans = [x509.IPAddress(ipaddress.ip_address(address))] + [x509.DNSName(h) for h in hosts]
    current = read(CERT)
    if current and read(KEY) and not ca_changed:
        cert = x509.load_pem_x509_certificate(current)
        have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        if set(have) == set(sans) and cert.issuer == ca_name:
            return
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, socket.gethostname())]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(ca_key, None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    etcd_user = pwd.getpwnam("etcd")
    write(KEY, key_pem, 0o600, etcd_user)
    write(CERT, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def host_names(address):
    """This member's names for its private address in /etc/hosts (FQDN and host name)."""
    found = {socket.gethostname()}
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#", 1)[0].split()
                if fields and fields[0] == address:
                    found.update(fields[1:])
    except FileNotFoundError:
        pass
    return sorted(found)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return b""


def write(path, data, mode, owner=None):
    """Writes `path` atomically with `mode` (and `owner`) from the start, unless it holds
    `data` already; whether it changed."""
    if read(path) == data:
        return False
    tmp = f"{path}.lct-tmp"
    if os.path.exists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    if owner is not None:
        os.chown(tmp, owner.pw_uid, owner.pw_gid)
    os.replace(tmp, path)
    return True


class Etcd:
    """etcdctl with this member's certificate, at the members' private addresses."""

    def __init__(self, address):
        self.address = address

    def ctl(self, addresses, *args, check=True):
        endpoints = ",".join(client_url(a) for a in addresses)
        argv = ["etcdctl", f"--endpoints={endpoints}", f"--cacert={CA_CERT}", f"--cert={CERT}", f"--key={KEY}"]
        out = subprocess.run(argv + ["--command-timeout=10s", *args], capture_output=True, text=True, cwd="/")
        if check and out.returncode != 0:
            sys.exit(f"etcdctl {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
        return out

    def members(self, addresses):
        """The member list, asked again for a few seconds while no member answers (an empty
        list would pass for "everyone left" where the hook waits for that)."""
        for _ in range(10):
            out = self.ctl(addresses, "member", "list", "-w", "json", check=False)
            if out.returncode == 0:
                return json.loads(out.stdout).get("members", [])
            time.sleep(1)
        sys.exit(f"etcdctl member list: {out.stderr.strip() or out.stdout.strip()}")

    def remove(self, addresses, member):
        out = self.ctl(addresses, "member", "remove", format(member["ID"], "x"), check=False)
        if out.returncode != 0 and "member not found" not in out.stderr:
            sys.exit(f"etcdctl member remove {member.get('name')}: {out.stderr.strip()}")

    def healthy(self, addresses):
        return self.ctl(addresses, "endpoint", "health", check=False).returncode == 0

    def wait_healthy(self, addresses):
        self.wait(f"a healthy cluster at {','.join(addresses)}", lambda: self.healthy(addresses))

    def wait(self, what, done):
        deadline = time.monotonic() + TIMEOUT
        while not done():
            if time.monotonic() > deadline:
                sys.exit(f"waited {TIMEOUT}s for {what}")
            time.sleep(1)


if __name__ == "__main__":
    main()

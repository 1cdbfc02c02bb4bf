#!/usr/bin/python3
"""Installs, configures and starts HDFS (the hdfs-ha plan) from lct's inventory.

As a hook (no arguments): copies itself to /usr/local/sbin/lct-hadoop; when LCT_PARAM_INSTALL
is true, installs Java from Debian, downloads the Hadoop release (checked by SHA-256 before
it is unpacked), writes /etc/hadoop/{core,hdfs}-site.xml from the inventory on standard input
and ZooKeeper's offered `connect`, writes a systemd unit per role, and starts this node's
JournalNode (on journal nodes). The release is the plan's download (Apache's archive) unless
the operator gives `hadoop_url` and `hadoop_sha256` (a mirror, or file:///PATH on the nodes). `lct-hadoop start STEP` runs the later steps the plan's
hooks name: `namenode-first` (format once, formatZK, NameNode and ZKFC on the first
NameNode), `namenode-standby` (bootstrapStandby once, NameNode and ZKFC on the others),
`datanode`. With install false every step does nothing: the nodes, names and flows are
what the plan then makes.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request

# The release and its pin, as the plan's `downloads` says (lct hands them over).
URL = os.environ.get("LCT_DOWNLOAD_1_URL", "")
SHA256 = os.environ.get("LCT_DOWNLOAD_1_SHA256", "")
HOME = "/opt/hadoop"
CONF = "/etc/hadoop"
DATA = "/var/lib/hadoop"
SELF = "/usr/local/sbin/lct-hadoop"
INVENTORY = "/etc/hadoop/lct-inventory.json"


def installing():
    return os.environ.get("LCT_PARAM_INSTALL", "true") == "true"


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "start":
        if installing():
            start(sys.argv[2])
        return
    records = [json.loads(line) for line in sys.stdin if line.strip()]
    shutil.copyfile(sys.argv[0], SELF + ".tmp")
    os.chmod(SELF + ".tmp", 0o755)
    os.replace(SELF + ".tmp", SELF)
    if not installing():
        print("install is false: nodes, names and flows only")
        return
    cluster = os.environ["LCT_CLUSTER"]
    nodes = [n for n in records if n.get("kind") == "node" and n["cluster"] == cluster]
    by_group = {g: sorted((n for n in nodes if n["group"] == g), key=lambda n: n["name"])
                for g in ("namenode", "journalnode", "datanode")}
    zookeeper = os.environ.get("LCT_OFFER_ZOOKEEPER_CONNECT", "")
    source()  # a bad hadoop_url or pin stops here, before anything is installed
    if not zookeeper:
        sys.exit("no ZooKeeper hosts offered (LCT_OFFER_ZOOKEEPER_CONNECT is empty)")
    install_hadoop()
    os.makedirs(CONF, exist_ok=True)
    fqdn = {n["name"]: f"{n['name']}.{cluster}.{os.environ.get('LCT_DOMAIN', 'lct.internal')}" for n in nodes}
    write(INVENTORY, json.dumps({g: [fqdn[n["name"]] for n in ns] for g, ns in by_group.items()}))
    public = os.environ.get("LCT_PARAM_LISTEN_PUBLIC") == "true"
    core, hdfs = settings(cluster, nodes, by_group, fqdn, zookeeper, socket.gethostname(), public)
    changed = write(f"{CONF}/core-site.xml", site(core))
    changed |= write(f"{CONF}/hdfs-site.xml", site(hdfs))
    for role in ("journalnode", "namenode", "zkfc", "datanode"):
        write(f"/etc/systemd/system/lct-hdfs-{role}.service", unit(role))
    subprocess.run(["systemctl", "daemon-reload"], check=True)
    me = socket.gethostname()
    if any(n["name"] == me for n in by_group["journalnode"]):
        run_role("journalnode", restart=changed)
    elif changed:
        for role in ("namenode", "zkfc", "datanode"):
            if active(role):
                subprocess.run(["systemctl", "restart", f"lct-hdfs-{role}"], check=True)
    print(f"{me}: hadoop configured{' (changed)' if changed else ''}")


def settings(cluster, nodes, by_group, fqdn, zookeeper, me, public):
    """core-site and hdfs-site for node `me`: every HDFS port (NameNode RPC and HTTP,
    JournalNode, DataNode) binds this node's private address, or all addresses with the
    plan's `listen_public` (the firewall still decides who)."""
    own = next(n for n in nodes if n["name"] == me)
    bind = "0.0.0.0" if public else own["private_ipv4"][0]
    nn = [fqdn[n["name"]] for n in by_group["namenode"]]
    jn = [fqdn[n["name"]] for n in by_group["journalnode"]]
    ids = [f"nn{i + 1}" for i in range(len(nn))]
    core = {
        "fs.defaultFS": f"hdfs://{cluster}",
        "ha.zookeeper.quorum": zookeeper,
        "hadoop.tmp.dir": f"{DATA}/tmp",
    }
    hdfs = {
        "dfs.nameservices": cluster,
        f"dfs.ha.namenodes.{cluster}": ",".join(ids),
        "dfs.namenode.shared.edits.dir": "qjournal://" + ";".join(f"{h}:8485" for h in jn) + f"/{cluster}",
        f"dfs.client.failover.proxy.provider.{cluster}":
            "org.apache.hadoop.hdfs.server.namenode.ha.ConfiguredFailoverProxyProvider",
        "dfs.ha.fencing.methods": "shell(/bin/true)",
        "dfs.ha.automatic-failover.enabled": "true",
        "dfs.journalnode.edits.dir": f"{DATA}/journal",
        "dfs.namenode.name.dir": f"{DATA}/name",
        "dfs.datanode.data.dir": f"{DATA}/data",
        "dfs.replication": str(min(3, max(1, len(by_group["datanode"])))),
        # The NameNodes' addresses name hosts (their FQDNs, which clients use); what they
        # listen on is the bind host.
        "dfs.namenode.rpc-bind-host": bind,
        "dfs.namenode.servicerpc-bind-host": bind,
        "dfs.namenode.lifeline.rpc-bind-host": bind,
        "dfs.namenode.http-bind-host": bind,
        "dfs.namenode.https-bind-host": bind,
        "dfs.journalnode.rpc-address": f"{bind}:8485",
        "dfs.journalnode.http-address": f"{bind}:8480",
        "dfs.journalnode.https-address": f"{bind}:8481",
        "dfs.datanode.address": f"{bind}:9866",
        "dfs.datanode.http.address": f"{bind}:9864",
        "dfs.datanode.https.address": f"{bind}:9865",
        "dfs.datanode.ipc.address": f"{bind}:9867",
    }
    for i, host in zip(ids, nn):
        hdfs[f"dfs.namenode.rpc-address.{cluster}.{i}"] = f"{host}:8020"
        hdfs[f"dfs.namenode.http-address.{cluster}.{i}"] = f"{host}:9870"
    return core, hdfs


def source():
    """Where the release comes from and its pin: the plan's download (Apache's archive), or
    the operator's `hadoop_url` with its `hadoop_sha256` (a local mirror, a file on the
    nodes). Checked before anything is installed or fetched."""
    url = os.environ.get("LCT_PARAM_HADOOP_URL", "")
    pin = os.environ.get("LCT_PARAM_HADOOP_SHA256", "")
    if not url:
        if pin:
            sys.exit("parameter hadoop_sha256 is set without hadoop_url: set both, or neither")
        url, pin, names = URL, SHA256, "the plan's download (LCT_DOWNLOAD_1_URL, LCT_DOWNLOAD_1_SHA256)"
    else:
        names = "parameters hadoop_url, hadoop_sha256"
        if not re.fullmatch(r"(https?://[^/\s\"'`\\<>]+|file://)/[^\s\"'`\\<>]*", url):
            sys.exit(f"parameter hadoop_url: {url!r} is not an http://, https:// or file:/// URL "
                     "without spaces or quotes")
    if not url or not re.fullmatch(r"[0-9a-fA-F]{64}", pin):
        sys.exit(f"{names}: a URL and a SHA-256 of 64 hexadecimal digits are needed, "
                 f"got {pin!r} for the SHA-256")
    return url, pin.lower()


def install_hadoop():
    if os.path.exists(f"{HOME}/bin/hdfs"):
        return
    url, pin = source()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # Java from Debian (the plan's `packages`, in the lab's mirror): the index first, which a
    # fresh node has not read (with install false no Java is installed at all).
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", "--", "default-jre-headless"],
                   check=True, env=env, stdout=subprocess.DEVNULL)
    tarball = fetch(url, pin, "/var/cache/lct-hadoop")
    top = unpack(tarball, "/opt")
    os.symlink(f"/opt/{top}", HOME + ".tmp")
    os.replace(HOME + ".tmp", HOME)
    subprocess.run(["useradd", "--system", "--home-dir", DATA, "--create-home", "hdfs"], check=False)


def fetch(url, pin, cache):
    """The release at `url` in `cache`, named by its pin (never by the URL, which the
    operator or a mirror chooses), kept only when its SHA-256 is `pin`."""
    os.makedirs(cache, exist_ok=True)
    tarball = f"{cache}/{pin}.tar.gz"
    if os.path.exists(tarball) and sha256(tarball) == pin:
        return tarball
    with urllib.request.urlopen(url, timeout=60) as r, open(tarball + ".part", "wb") as f:
        shutil.copyfileobj(r, f, 1 << 20)
    got = sha256(tarball + ".part")
    if got != pin:
        os.remove(tarball + ".part")
        sys.exit(f"{url}: SHA-256 {got}, not the pinned {pin}: nothing was unpacked")
    os.replace(tarball + ".part", tarball)
    return tarball


def unpack(tarball, into):
    """Unpacks the release's one top directory into `into` and returns its name. Every member
    is checked first (even a pinned archive): it lies under that directory, names no parent
    or absolute path, is a file, directory or link that stays inside it; otherwise nothing is
    unpacked."""
    with tarfile.open(tarball) as t:
        members = t.getmembers()
        tops = sorted({m.name.split("/")[0] for m in members})
        top = tops[0] if len(tops) == 1 else ""
        if top in ("", ".", "..") or not re.fullmatch(r"[A-Za-z0-9._+-]+", top):
            sys.exit(f"{tarball}: not one top directory ({tops[:5]}): nothing was unpacked")
        for m in members:
            parts = m.name.split("/")
            bad = m.name.startswith("/") or ".." in parts
            if m.issym() or m.islnk():
                base = os.path.dirname(m.name) if m.issym() else ""
                target = os.path.normpath(os.path.join(base, m.linkname))
                bad |= m.linkname.startswith("/") or not (target == top or target.startswith(top + "/"))
            elif not (m.isfile() or m.isdir()):
                bad = True
            if bad:
                sys.exit(f"{tarball}: member {m.name!r} would reach outside {top}/ or is not a file, "
                         "directory or link: nothing was unpacked")
        try:
            t.extractall(into, filter="data")
        except TypeError:  # a Python without extraction filters: every member was checked above
            t.extractall(into)
    return top


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def site(properties):
    body = "".join(f"  <property><name>{k}</name><value>{v}</value></property>\n" for k, v in sorted(properties.items()))
    return f'<?xml version="1.0"?>\n<!-- Written by lct (hdfs-ha plan). -->\n<configuration>\n{body}</configuration>\n'


def unit(role):
    return f"""[Unit]
Description=HDFS {role} (lct hdfs-ha plan)
After=network-online.target

[Service]
User=hdfs
Environment=JAVA_HOME=/usr/lib/jvm/default-java HADOOP_CONF_DIR={CONF} HADOOP_LOG_DIR={DATA}/logs
ExecStart={HOME}/bin/hdfs {role}
Restart=on-failure
RestartSec=5s

[Install]
WantedBy=multi-user.target
"""


def active(role):
    return subprocess.run(["systemctl", "is-active", "--quiet", f"lct-hdfs-{role}"]).returncode == 0


def run_role(role, restart=False):
    subprocess.run(["systemctl", "enable", "--quiet", f"lct-hdfs-{role}"], check=True)
    subprocess.run(["systemctl", "restart" if restart or not active(role) else "start", f"lct-hdfs-{role}"], check=True)


def as_hdfs(*args):
    env = dict(os.environ, JAVA_HOME="/usr/lib/jvm/default-java", HADOOP_CONF_DIR=CONF)
    subprocess.run(["runuser", "-u", "hdfs", "--", f"{HOME}/bin/hdfs", *args], check=True, env=env)


def wait_port(host, port, timeout=300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((host, port), 3).close()
            return
        except OSError:
            time.sleep(2)
    sys.exit(f"{host}:{port} does not answer after {timeout}s")


def start(step):
    with open(INVENTORY) as f:
        groups = json.load(f)
    me = socket.gethostname()
    first = re.search(r"-1$", me) is not None
    if step == "namenode-first" and first:
        for jn in groups["journalnode"]:
            wait_port(jn, 8485)
        if not os.path.exists(f"{DATA}/name/current/VERSION"):
            as_hdfs("namenode", "-format", "-nonInteractive")
            as_hdfs("zkfc", "-formatZK", "-nonInteractive")
        run_role("namenode")
        run_role("zkfc")
    elif step == "namenode-standby" and not first:
        wait_port(groups["namenode"][0], 8020)
        if not os.path.exists(f"{DATA}/name/current/VERSION"):
            as_hdfs("namenode", "-bootstrapStandby", "-nonInteractive")
        run_role("namenode")
        run_role("zkfc")
    elif step == "datanode":
        run_role("datanode")


def write(path, text):
    try:
        with open(path) as f:
            if f.read() == text:
                return False
    except FileNotFoundError:
        pass
    with open(path + ".lct-tmp", "w") as f:
        f.write(text)
    os.replace(path + ".lct-tmp", path)
    return True


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Configures this node's Redis server and Sentinel from lct's inventory.

Standard input: the plan-secrets line (the password), then the node records. Every node of
the cluster runs a Redis server and a Sentinel, both bound to the node's private address and
localhost, both requiring the password (Redis: requirepass, and masterauth towards the
primary; Sentinel: requirepass, sentinel-pass towards the other Sentinels, auth-pass towards
Redis). The password reaches the configuration files only (0640, owned by redis), never a
command line: this script speaks Redis's protocol itself (RESP over a socket).

The primary is the one the Sentinels name (`SENTINEL get-master-addr-by-name`); when no
Sentinel knows one yet (the `created` event), it is the lowest-numbered node. Each file is
written once per node (a node made again starts afresh): afterwards Redis and Sentinel own
them, since a failover rewrites them (CONFIG REWRITE), and lct does not fight it.

On `node-removed` the lowest-numbered node that remains waits until the Sentinels agree on a
primary that is still a node (a failover, when the primary was the one lost), then resets
the Sentinels one after another (SENTINEL RESET), each until it has found the others and the
replicas again, so the removed node is forgotten and a majority is counted over the nodes
there are.
"""

import json
import os
import pwd
import re
import socket
import subprocess
import sys
import time
from collections import Counter

REDIS_CONF = "/etc/redis/redis.conf"
SENTINEL_CONF = "/etc/redis/sentinel.conf"
MARK = "# Written by lct (redis-sentinel plan)"
# A Sentinel master name goes into sentinel.conf: nothing but a plain word.
MASTER_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REDIS, SENTINEL = 6379, 26379


def main():
    records = [json.loads(line) for line in sys.stdin if line.strip()]
    password = next(r for r in records if r.get("kind") == "plan-secrets")["parameters"]["password"]
    cluster = os.environ["LCT_CLUSTER"]
    event = os.environ.get("LCT_EVENT", "")
    # The name the Sentinels know the primary by: the cluster's, a label (checked again:
    # it is a word of a line of sentinel.conf).
    name = cluster
    if not MASTER_NAME.match(name):
        sys.exit(f"cluster name {name!r} is not a Sentinel master name (letters, digits, `.`, `_`, `-`; at most 64)")
    quorum = int(os.environ.get("LCT_PARAM_QUORUM", "2"))
    members = {
        n["name"]: n["private_ipv4"][0]
        for n in records
        if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "redis"
    }
    me = socket.gethostname()
    if me not in members:
        sys.exit(f"{me} is not a node of {cluster}")
    first = min(members, key=number)
    address = members[me]

    if event == "node-removed":
        if me != first:
            print(f"{me}: {first} resets the Sentinels")
            return
        master = agreed_master(members, password, name, None)
        reset_sentinels(members, password, name, master)
        print(f"{me}: the Sentinels know {len(members)} node(s) again; primary {master}")
        return

    fallback = members[first] if event == "created" else None
    master = agreed_master(members, password, name, fallback)
    own = owned_by_redis()
    redis_new = write_once(REDIS_CONF, redis_config(address, password, master), own)
    sentinel_new = write_once(SENTINEL_CONF, sentinel_config(address, password, name, master, quorum), own)
    start("redis-server", redis_new)
    role = wait_replication(address, password, master)
    start("redis-sentinel", sentinel_new)
    wait_sentinel(address, password, name, master, members)
    print(f"{me}: {role}; Sentinel sees {len(members) - 1} other Sentinel(s) and the replicas")


def number(node):
    """The number a node's name ends with (redis-3: 3), its place in the cluster."""
    match = re.search(r"(\d+)$", node)
    return int(match.group(1)) if match else 0


def quote(value):
    """A value as Redis's configuration reads it: double quotes, anything but letters and
    digits as a \\xHH escape (a newline cannot start another directive)."""
    return '"' + "".join(c if c.isascii() and c.isalnum() else "".join(f"\\x{b:02x}" for b in c.encode()) for c in value) + '"'


def redis_config(address, password, master):
    lines = [
        f"{MARK}: the node's Redis server. Redis rewrites it",
        "# (CONFIG REWRITE: a Sentinel's failover changes replicaof); lct writes it once.",
        f"bind {address} 127.0.0.1",
        "protected-mode yes",
        f"port {REDIS}",
        "daemonize no",
        "supervised systemd",
        "pidfile /run/redis/redis-server.pid",
        "loglevel notice",
        "logfile /var/log/redis/redis-server.log",
        "dir /var/lib/redis",
        "dbfilename dump.rdb",
        "appendonly yes",
        "replica-read-only yes",
        f"requirepass {quote(password)}",
        f"masterauth {quote(password)}",
    ]
    if master != address:
        lines.append(f"replicaof {master} {REDIS}")
    return "\n".join(lines) + "\n"


def sentinel_config(address, password, name, master, quorum):
    return "\n".join([
        f"{MARK}: the node's Sentinel. Sentinel rewrites it",
        "# (what it learns: other Sentinels, replicas, failovers); lct writes it once.",
        f"bind {address} 127.0.0.1",
        "protected-mode yes",
        f"port {SENTINEL}",
        "daemonize no",
        "supervised systemd",
        "pidfile /run/sentinel/redis-sentinel.pid",
        "logfile /var/log/redis/redis-sentinel.log",
        "dir /var/lib/redis",
        f"requirepass {quote(password)}",
        f"sentinel sentinel-pass {quote(password)}",
        "sentinel resolve-hostnames no",
        "sentinel deny-scripts-reconfig yes",
        f"sentinel monitor {name} {master} {REDIS} {quorum}",
        f"sentinel auth-pass {name} {quote(password)}",
        f"sentinel down-after-milliseconds {name} 5000",
        f"sentinel failover-timeout {name} 20000",
        f"sentinel parallel-syncs {name} 1",
    ]) + "\n"


def owned_by_redis():
    pw = pwd.getpwnam("redis")
    return pw.pw_uid, pw.pw_gid


def write_once(path, text, owner):
    """Writes `path` (0640, owned by redis) unless lct wrote it before; whether it did now."""
    try:
        with open(path) as f:
            if f.readline().startswith(MARK):
                return False
    except FileNotFoundError:
        pass
    tmp = f"{path}.lct-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chown(tmp, *owner)
    os.chmod(tmp, 0o640)
    os.replace(tmp, path)
    return True


def start(unit, changed):
    subprocess.run(["systemctl", "enable", "--quiet", unit], check=False)
    active = subprocess.run(["systemctl", "is-active", "--quiet", unit]).returncode == 0
    if changed or not active:
        subprocess.run(["systemctl", "restart", unit], check=True)


class RedisError(Exception):
    pass


def call(address, port, password, *args, timeout=3):
    """One command after AUTH, over RESP; the reply (strings, integers, lists, None)."""
    def encode(*words):
        out = [f"*{len(words)}\r\n".encode()]
        for w in words:
            data = w.encode() if isinstance(w, str) else w
            out.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
        return b"".join(out)

    with socket.create_connection((address, port), timeout=timeout) as s:
        s.sendall(encode("AUTH", password) + encode(*args))
        f = s.makefile("rb")
        read(f)
        return read(f)


def read(f):
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise OSError("the connection closed")
    kind, rest = line[:1], line[1:-2].decode()
    if kind == b"+":
        return rest
    if kind == b"-":
        raise RedisError(rest)
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        return None if n < 0 else f.read(n + 2)[:-2].decode()
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [read(f) for _ in range(n)]
    raise OSError(f"not a RESP reply: {line[:40]!r}")


def pairs(flat):
    """A Sentinel's flat [key, value, ...] list as a dict."""
    return dict(zip(flat[::2], flat[1::2]))


def ask(address, port, password, *args):
    try:
        return call(address, port, password, *args)
    except (OSError, RedisError, ValueError):
        return None


def info(address, password):
    text = ask(address, REDIS, password, "INFO", "replication") or ""
    return dict(line.split(":", 1) for line in text.splitlines() if ":" in line)


def agreed_master(members, password, name, fallback, timeout=120):
    """The primary every Sentinel that answers names, a node of the cluster that says it
    is a primary; `fallback` when no Sentinel knows one (a new cluster); else waits (a
    failover takes seconds) and fails naming what it heard."""
    addresses = set(members.values())
    deadline = time.monotonic() + timeout
    while True:
        answers = []
        for node in sorted(members):
            reply = ask(members[node], SENTINEL, password, "SENTINEL", "get-master-addr-by-name", name)
            if isinstance(reply, list) and reply:
                answers.append(reply[0])
        known = Counter(a for a in answers if a in addresses)
        if len(known) == 1 and len(answers) == sum(known.values()):
            master = next(iter(known))
            if info(master, password).get("role") == "master":
                return master
        if not answers and fallback:
            return fallback
        if time.monotonic() > deadline:
            sys.exit(f"the Sentinels do not agree on a primary among {sorted(addresses)} after {timeout}s: {answers}")
        time.sleep(1)


def wait_replication(address, password, master, timeout=180):
    """Until this Redis is the primary, or a replica of `master` whose link is up (its copy
    of the data made)."""
    deadline = time.monotonic() + timeout
    state = {}
    while time.monotonic() < deadline:
        state = info(address, password)
        if master == address and state.get("role") == "master":
            return "primary"
        if state.get("role") == "slave" and state.get("master_host") == master and state.get("master_link_status") == "up":
            return f"replica of {master}"
        time.sleep(0.5)
    sys.exit(f"Redis on {address} is not {'the primary' if master == address else 'a replica of ' + master} after {timeout}s: {state}")


def sentinel_view(address, password, name):
    """What the Sentinel at `address` knows: the primary, the replicas' and Sentinels' addresses."""
    master = ask(address, SENTINEL, password, "SENTINEL", "master", name)
    replicas = ask(address, SENTINEL, password, "SENTINEL", "replicas", name)
    sentinels = ask(address, SENTINEL, password, "SENTINEL", "sentinels", name)
    if not isinstance(master, list) or replicas is None or sentinels is None:
        return None
    return (
        pairs(master).get("ip"),
        {pairs(r).get("ip") for r in replicas},
        {pairs(s).get("ip") for s in sentinels},
    )


def complete(view, address, master, members):
    """Whether a Sentinel's view is the cluster: the primary, every other node a replica,
    every other node's Sentinel known, nothing else."""
    others = set(members.values()) - {address}
    return view is not None and view == (master, set(members.values()) - {master}, others)


def wait_sentinel(address, password, name, master, members, timeout=90):
    deadline = time.monotonic() + timeout
    view = None
    while time.monotonic() < deadline:
        view = sentinel_view(address, password, name)
        if complete(view, address, master, members):
            return
        time.sleep(0.5)
    sys.exit(f"Sentinel on {address} does not know the cluster after {timeout}s: (primary, replicas, sentinels) = {view}")


def reset_sentinels(members, password, name, master, timeout=180):
    """SENTINEL RESET on each node's Sentinel in turn, each until it has found the cluster
    again (a primary may list a replica that is gone until its link times out: reset again,
    but only after 30 s: a Sentinel learns the replicas from the primary's INFO, which it asks
    every 10 s, later on a loaded machine; resetting sooner can keep it from ever finishing)."""
    for node in sorted(members, key=number):
        address = members[node]
        deadline = time.monotonic() + timeout
        view = None
        while True:
            call(address, SENTINEL, password, "SENTINEL", "RESET", name)
            again = time.monotonic() + 30
            while time.monotonic() < again:
                view = sentinel_view(address, password, name)
                if complete(view, address, master, members):
                    break
                time.sleep(0.5)
            if complete(view, address, master, members):
                break
            if time.monotonic() > deadline:
                sys.exit(f"Sentinel on {node} does not know the cluster after a reset ({timeout}s): {view}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Configures and clusters RabbitMQ on this node (the rabbitmq plan), on every event.

Standard input: the plan-secrets line (erlang_cookie, password), then the node records.
Writes the Erlang cookie (0400 rabbitmq), rabbitmq-env.conf (node name rabbit@FQDN, long
names) and rabbitmq.conf (AMQP on the private address and localhost), restarting RabbitMQ
when any of them changed (stopped before the cookie changes: its CLI needs the old one).
Then: a node that is not in the cluster of the first member joins it (the first member is
the lowest-named node that this event did not add); the first member forgets nodes that
left the inventory, on `created` makes the vhost `/` again with quorum as its default queue
type, replaces `guest` by the user `lct` (imported as a salted hash from a 0600 file, never
an argument); an added node becomes a member of every quorum queue.
"""

import base64
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

ETC = "/etc/rabbitmq"
COOKIE = "/var/lib/rabbitmq/.erlang.cookie"


def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    secrets = next(r for r in lines if r.get("kind") == "plan-secrets")["parameters"]
    cluster = os.environ["LCT_CLUSTER"]
    domain = os.environ.get("LCT_DOMAIN", "lct.internal")
    members = sorted(n["name"] for n in lines if n.get("kind") == "node" and n["cluster"] == cluster)
    me = socket.gethostname()
    mine = next(n for n in lines if n.get("kind") == "node" and n["name"] == me)
    added = set(filter(None, os.environ.get("LCT_NODES_ADDED", "").split(",")))
    node = lambda name: f"rabbit@{name}.{cluster}.{domain}"
    bind = "0.0.0.0" if os.environ.get("LCT_PARAM_LISTEN_PUBLIC") == "true" else mine["private_ipv4"][0]

    env_conf = f"# Written by lct (rabbitmq plan).\nNODENAME={node(me)}\nUSE_LONGNAME=true\n"
    conf = "# Written by lct (rabbitmq plan).\n" + "".join(
        f"listeners.tcp.{i} = {a}:5672\n" for i, a in enumerate(dict.fromkeys([bind, "127.0.0.1"]), 1)
    ) + "cluster_partition_handling = pause_minority\n"
    cookie = secrets["erlang_cookie"]
    if changes(f"{ETC}/rabbitmq-env.conf", env_conf) or changes(f"{ETC}/rabbitmq.conf", conf) or changes(COOKIE, cookie):
        subprocess.run(["systemctl", "stop", "rabbitmq-server"], check=True)
        write(f"{ETC}/rabbitmq-env.conf", env_conf, 0o644)
        write(f"{ETC}/rabbitmq.conf", conf, 0o644)
        write(COOKIE, cookie, 0o400, owner="rabbitmq")
        subprocess.run(["systemctl", "start", "rabbitmq-server"], check=True)
    ctl("await_startup")

    first = next((m for m in members if m not in added), members[0])
    if me != first:
        joined = False
        deadline = time.monotonic() + 300
        while not joined:
            if node(first) in cluster_nodes(node(me)):
                joined = True
                break
            ctl("stop_app")
            ctl("reset")
            answer = ctl("join_cluster", node(first), check=False)
            ctl("start_app")
            if answer.returncode == 0:
                joined = True
            elif time.monotonic() > deadline:
                sys.exit(f"{me}: cannot join {node(first)}: {answer.stderr.strip()}")
            else:
                time.sleep(5)
        if me in added:
            ctl_tool("rabbitmq-queues", "grow", node(me), "all")
        print(f"{me}: member of {node(first)}'s cluster")
        return
    wanted = {node(m) for m in members}
    for gone in sorted(set(cluster_nodes(node(me))) - wanted):
        # Out of every quorum queue first (a queue still counting it would lose its majority
        # with one more node down), then out of the cluster.
        ctl_tool("rabbitmq-queues", "shrink", gone, check=False)
        ctl("forget_cluster_node", gone)
        print(f"{me}: forgot {gone}")
    if os.environ.get("LCT_EVENT") == "created":
        # Quorum queues by default: "/" made again (it holds nothing yet) with quorum as its
        # default queue type, so a durable queue declared without x-queue-type is one
        # (RabbitMQ 3.10 cannot change an existing vhost's metadata).
        ctl("delete_vhost", "/")
        ctl("add_vhost", "/", "--default-queue-type", "quorum")
    users(secrets["password"])
    print(f"{me}: first member of {sorted(wanted)}")


def users(password):
    """The user `lct` with `password` (a salted SHA-256, as RabbitMQ stores it), from a 0600
    definitions file removed afterwards; `guest` deleted."""
    salt = os.urandom(4)
    digest = base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()
    definitions = {
        "users": [{"name": "lct", "password_hash": digest, "hashing_algorithm": "rabbit_password_hashing_sha256",
                   "tags": ["administrator"]}],
        "vhosts": [{"name": "/"}],
        "permissions": [{"user": "lct", "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"}],
    }
    path = f"{ETC}/lct-definitions.json"
    write(path, json.dumps(definitions), 0o600, owner="rabbitmq")
    try:
        ctl("import_definitions", path)
    finally:
        os.remove(path)
    if "guest" in ctl("list_users", "--silent").stdout.split():
        ctl("delete_user", "guest")


def cluster_nodes(me):
    """The disc nodes of the cluster this node is in (itself, alone, when it is in none)."""
    status = json.loads(ctl("cluster_status", "--formatter", "json").stdout)
    return status.get("disk_nodes") or [me]


def ctl(*args, check=True):
    return ctl_tool("rabbitmqctl", *args, check=check)


def ctl_tool(tool, *args, check=True):
    done = subprocess.run([tool, *args], capture_output=True, text=True, cwd="/")
    if check and done.returncode != 0:
        sys.exit(f"{tool} {args[0]}: exit {done.returncode}: {done.stderr.strip()[:600]}")
    return done


def changes(path, text):
    try:
        with open(path) as f:
            return f.read() != text
    except FileNotFoundError:
        return True


def write(path, text, mode, owner=None):
    tmp = path + ".lct-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    if owner:
        import pwd
        entry = pwd.getpwnam(owner)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


if __name__ == "__main__":
    main()

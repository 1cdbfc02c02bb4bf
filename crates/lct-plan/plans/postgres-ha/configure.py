#!/usr/bin/python3
"""Configures Patroni (and through it PostgreSQL) on this node from lct's inventory.

Standard input: the plan-secrets line (the superuser, replication and REST API passwords),
then the node records. The ZooKeeper ensemble Patroni elects its leader through comes from the
value the zookeeper cluster offers (LCT_OFFER_ZOOKEEPER_CONNECT). Debian's default
`main` cluster is dropped (Patroni owns PostgreSQL here); the configuration is written
0600 for the postgres user, and Patroni is started, or reloaded when it changed.

Nothing listens on the node's public address unless the plan's `listen_public` says so:
PostgreSQL listens on the private address and localhost, Patroni's REST API on the private
address, and every unsafe request to it (POST, PUT, PATCH, DELETE: restart, switchover,
configuration) needs the user `patroni` and the generated password (patronictl takes them
from the same file).

Patroni reads ZooKeeper's host list only when it starts (its reload changes timeouts, not
hosts). When the list changed, the cluster is put in maintenance mode (`patronictl pause`:
Patroni then neither stops PostgreSQL when it exits nor fails over) and Patroni restarts
under the running PostgreSQL; the plan's next hook, resume.py, ends maintenance once every
node has done so.
"""

import json
import os
import socket
import subprocess
import sys
import time
import base64
import urllib.request

CONFIG = "/etc/patroni/config.yml"
VERSION = "15"
RESTAPI_USER = "patroni"


def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    secrets = next(r for r in lines if r.get("kind") == "plan-secrets")["parameters"]
    cluster = os.environ["LCT_CLUSTER"]
    me = socket.gethostname()
    mine = next((n for n in lines if n.get("kind") == "node" and n["name"] == me), None)
    if mine is None or mine["cluster"] != cluster:
        sys.exit(f"{me} is not a node of {cluster}")
    address = mine["private_ipv4"][0]
    public = os.environ.get("LCT_PARAM_LISTEN_PUBLIC") == "true"
    # PostgreSQL: the private address and localhost (local clients, hooks); Patroni's REST
    # API takes one address: the private one.
    pg_listen = "0.0.0.0:5432" if public else f"{address},127.0.0.1:5432"
    api_listen = "0.0.0.0:8008" if public else f"{address}:8008"
    api = Api(address, secrets["restapi_password"])
    zookeeper = [h for h in os.environ.get("LCT_OFFER_ZOOKEEPER_CONNECT", "").split(",") if h]
    if not zookeeper:
        sys.exit("no ZooKeeper hosts offered (LCT_OFFER_ZOOKEEPER_CONNECT is empty)")

    if os.path.isdir(f"/etc/postgresql/{VERSION}/main"):
        subprocess.run(["pg_dropcluster", "--stop", VERSION, "main"], check=True)

    config = f"""# Written by lct (postgres-ha plan).
scope: {cluster}
namespace: /lct/
name: {me}
restapi:
  listen: {api_listen}
  connect_address: {address}:8008
  authentication:
    username: {RESTAPI_USER}
    password: {json.dumps(secrets["restapi_password"])}
zookeeper:
  hosts: {json.dumps(zookeeper)}
bootstrap:
  dcs:
    ttl: 30
    loop_wait: 10
    retry_timeout: 10
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: false
      parameters:
        wal_level: replica
        hot_standby: "on"
        max_wal_senders: 10
        max_replication_slots: 10
  initdb:
    - encoding: UTF8
    - data-checksums
postgresql:
  listen: {json.dumps(pg_listen)}
  connect_address: {address}:5432
  data_dir: /var/lib/postgresql/{VERSION}/patroni
  bin_dir: /usr/lib/postgresql/{VERSION}/bin
  pgpass: /var/lib/postgresql/.pgpass.patroni
  authentication:
    superuser:
      username: postgres
      password: {json.dumps(secrets["superuser_password"])}
    replication:
      username: replicator
      password: {json.dumps(secrets["replication_password"])}
  parameters:
    unix_socket_directories: /var/run/postgresql
  pg_hba:
    - local all all peer
    - host all all 127.0.0.1/32 scram-sha-256
    - host all all 0.0.0.0/0 scram-sha-256
    - host replication replicator 0.0.0.0/0 scram-sha-256
"""
    before = read(CONFIG)
    changed = write(CONFIG, config)
    active = subprocess.run(["systemctl", "is-active", "--quiet", "patroni"]).returncode == 0
    if not active:
        subprocess.run(["systemctl", "enable", "--quiet", "patroni"], check=False)
        subprocess.run(["systemctl", "restart", "patroni"], check=True)
        done = "started"
    elif changed and zookeeper_hosts(before) != zookeeper:
        pause(api)
        subprocess.run(["systemctl", "restart", "patroni"], check=True)
        done = "restarted under a running PostgreSQL (new ZooKeeper hosts)"
    elif changed:
        # Patroni re-reads the rest of its configuration on SIGHUP (pg_hba, parameters).
        subprocess.run(["systemctl", "reload", "patroni"], check=True)
        done = "reloaded"
    else:
        done = "unchanged"
    role = wait_healthy(api)
    if role == "replica":
        wait_streaming()
    print(f"{me}: patroni {done}, {role}")


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return ""


def zookeeper_hosts(config):
    """The host list of a configuration this script wrote (one JSON line under `zookeeper:`)."""
    lines = config.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line == "zookeeper:" and lines[i + 1].startswith("  hosts: "):
            return json.loads(lines[i + 1][len("  hosts: "):])
    return None


class Api:
    """Patroni's REST API on this node, at its private address, with its credentials."""

    def __init__(self, address, password):
        self.url = f"http://{address}:8008"
        token = base64.b64encode(f"{RESTAPI_USER}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}"}

    def get(self, path, timeout):
        request = urllib.request.Request(self.url + path, headers=self.headers)
        with urllib.request.urlopen(request, timeout=timeout) as r:
            return json.load(r)

    def paused(self):
        return bool(self.get("/patroni", 5).get("pause"))


def pause(api):
    """Maintenance mode for the whole cluster, seen by every member (another node of the
    group may be pausing at the same moment: then patronictl says it is paused already).
    patronictl takes the REST API's credentials from the configuration file."""
    out = subprocess.run(
        ["patronictl", "-c", CONFIG, "pause", "--wait"], capture_output=True, text=True, cwd="/"
    )
    deadline = time.monotonic() + 60
    while not api.paused():
        if time.monotonic() > deadline:
            sys.exit(f"patroni did not enter maintenance mode: {out.stdout}{out.stderr}".strip())
        time.sleep(1)


def write(path, text):
    if read(path) == text:
        return False
    tmp = f"{path}.lct-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    import pwd

    pw = pwd.getpwnam("postgres")
    os.chown(tmp, pw.pw_uid, pw.pw_gid)
    os.replace(tmp, path)
    return True


def wait_healthy(api, timeout=180):
    """Until Patroni says PostgreSQL runs here (a primary, or a replica that has copied it)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            state = api.get("/health", 3)
            if state.get("state") == "running":
                return state.get("role", "?")
            last = state.get("state", "?")
        except Exception as e:  # not up yet: connection refused, 503 while starting
            last = str(e)
        time.sleep(1)
    sys.exit(f"patroni is not healthy after {timeout}s: {last}")


def wait_streaming(timeout=120):
    """Until this replica streams from the primary (its WAL receiver says so)."""
    deadline = time.monotonic() + timeout
    status = ""
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["runuser", "-u", "postgres", "--", "psql", "-XAtc", "select status from pg_stat_wal_receiver"],
            capture_output=True, text=True, cwd="/",
        )
        status = out.stdout.strip()
        if status == "streaming":
            return
        time.sleep(1)
    sys.exit(f"the replica does not stream after {timeout}s (WAL receiver: {status or 'none'})")


if __name__ == "__main__":
    main()

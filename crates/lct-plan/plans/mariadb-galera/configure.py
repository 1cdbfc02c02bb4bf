#!/usr/bin/python3
"""Configures this node of a MariaDB Galera cluster from lct's inventory (JSON lines on stdin,
after the plan-secrets line), and bootstraps the cluster on its first node, once.

The members are the nodes of this cluster's `db` group, by private address. The Galera
configuration (99-lct-galera.cnf, no secret in it) lists them in wsrep_cluster_address;
a running member only has the file rewritten when membership changes (the address list is
read when a node joins, a running cluster learns its members from Galera itself), so no
restart. MariaDB (3306), Galera's replication (4567), IST (4568) and SST (4444) bind to the
node's private address; local clients use the Unix socket. The SST credential
(wsrep_sst_auth, user lct_sst) is in 99-lct-sst.cnf, 0600 for the mysql user.

Bootstrap: on the `created` event only, on the first node (the lowest index), and only if
this node never joined or bootstrapped a cluster (the marker /var/lib/lct-galera/bootstrapped
is written right after, and Galera's grastate.dat holds the cluster's UUID): galera_new_cluster,
then the users lct_sst (localhost, what mariabackup needs) and admin (every privilege, from
anywhere the firewall admits), their passwords on the client's standard input. Other nodes
are started by join.py, the next hook, once this one has succeeded everywhere.

On `started` (after `lct-plan stop`, whose stop.py stopped the members last-index-first, so
the first node left last and Galera marked it safe_to_bootstrap), the node whose grastate.dat
says `safe_to_bootstrap: 1` bootstraps again from its own data; join.py starts the others.
No node says so after an unclean stop of every node: then nothing is bootstrapped and join.py
fails, naming what to do (docs/plans.md, mariadb-galera).
"""

import json
import os
import pwd
import re
import socket
import subprocess
import sys
import time

CONF_DIR = "/etc/mysql/mariadb.conf.d"
GALERA_CNF = f"{CONF_DIR}/99-lct-galera.cnf"
SST_CNF = f"{CONF_DIR}/99-lct-sst.cnf"
MARKER = "/var/lib/lct-galera/bootstrapped"
GRASTATE = "/var/lib/mysql/grastate.dat"
# What a password may hold: it is written into my.cnf and read back by the SST shell
# scripts, so nothing a shell or my.cnf gives meaning to (quotes, $, `, \, #, spaces).
PASSWORD = re.compile(r"[A-Za-z0-9._+=-]{12,128}")


def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    secrets = next(r for r in lines if r.get("kind") == "plan-secrets")["parameters"]
    for name in ("admin_password", "sst_password"):
        if not PASSWORD.fullmatch(secrets[name]):
            sys.exit(f"parameter {name}: 12 to 128 letters, digits or ._+=- (the value is not shown)")
    cluster = os.environ["LCT_CLUSTER"]
    event = os.environ.get("LCT_EVENT", "")
    members = sorted(
        (n for n in lines if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "db"),
        key=lambda n: index(n["name"]),
    )
    me = socket.gethostname()
    mine = next((n for n in members if n["name"] == me), None)
    if mine is None:
        sys.exit(f"{me} is not a db node of {cluster}")
    address = mine["private_ipv4"][0]
    peers = ",".join(n["private_ipv4"][0] for n in members)

    config = f"""# Written by lct (mariadb-galera plan): the members from the inventory.
[galera]
wsrep_on = ON
wsrep_provider = /usr/lib/galera/libgalera_smm.so
wsrep_cluster_name = {cluster}
wsrep_cluster_address = gcomm://{peers}
wsrep_node_name = {me}
wsrep_node_address = {address}
wsrep_provider_options = "gmcast.listen_addr=tcp://{address}:4567;ist.recv_addr={address}:4568"
wsrep_sst_method = mariabackup
wsrep_sst_receive_address = {address}:4444
binlog_format = ROW
default_storage_engine = InnoDB
innodb_autoinc_lock_mode = 2
bind_address = {address}
"""
    # Debian's mariadb.socket holds 3306 and the Unix socket for socket activation: the
    # recovery run before each start (galera_recovery) could not bind, and any client would
    # start a server out of order. lct starts MariaDB itself.
    subprocess.run(["systemctl", "mask", "--now", "--quiet", "mariadb.socket"], check=True)
    first_time = not os.path.exists(GALERA_CNF)
    if first_time and active():
        # The standalone server Debian's package started (on 127.0.0.1): it becomes a
        # Galera member only through lct's hooks, which decide the order nodes start in.
        subprocess.run(["systemctl", "stop", "mariadb"], check=True)
    # lct starts MariaDB (join.py), in the order a Galera cluster needs; at boot a member
    # would try to join peers that may all be down.
    subprocess.run(["systemctl", "disable", "--quiet", "mariadb"], check=False)
    mysql = pwd.getpwnam("mysql")
    write(GALERA_CNF, config, 0o644, 0, 0)
    write(SST_CNF, f"[mariadb]\nwsrep_sst_auth = lct_sst:{secrets['sst_password']}\n", 0o600, mysql.pw_uid, mysql.pw_gid)

    first = mine is members[0]
    if event == "created" and first and not os.path.exists(MARKER) and not joined_before():
        start(["galera_new_cluster"])
        os.makedirs(os.path.dirname(MARKER), mode=0o700, exist_ok=True)
        write(MARKER, "galera_new_cluster ran here on the created event\n", 0o600, 0, 0)
        print(f"{me}: bootstrapped cluster {cluster} (galera_new_cluster), members {peers}")
    elif event == "started" and not active() and safe_to_bootstrap():
        start(["galera_new_cluster"])
        print(f"{me}: safe_to_bootstrap, bootstrapped {cluster} again from this node's data")
    else:
        print(f"{me}: members {peers} ({'running' if active() else 'not running'})")
    if event == "created" and first and active():
        users(secrets)


def start(command):
    """Starts MariaDB (`galera_new_cluster`, `systemctl start mariadb`); when it fails, the
    hook's error says why, from MariaDB's journal. A failed start is looked at once the unit
    has settled, and tried once more: on a loaded node systemctl's own call to systemd can time
    out while MariaDB starts, or fail before it began (seen when many machines boot at once)."""
    for attempt in (1, 2):
        # A start that failed before (the unit's start limit) does not block this one.
        subprocess.run(["systemctl", "reset-failed", "mariadb"], stderr=subprocess.DEVNULL)
        if subprocess.run(command, cwd="/").returncode == 0:
            return
        settle()
        if active():
            return
        if attempt == 1:
            sys.stderr.write(f"{' '.join(command)} failed; trying once more\n")
    journal = subprocess.run(
        ["journalctl", "-u", "mariadb", "-n", "15", "--no-pager", "-o", "cat"], capture_output=True, text=True
    ).stdout
    sys.stderr.write(journal)
    errors = [line for line in journal.splitlines() if "ERROR" in line]
    sys.exit(f"{' '.join(command)} failed: {errors[-1] if errors else 'see the journal above'}")


def index(name):
    match = re.search(r"(\d+)$", name)
    if not match:
        sys.exit(f"{name}: a node's name ends with its number")
    return int(match.group(1))


def settle(limit=900):
    """Waits while MariaDB's unit is still starting or stopping (its start may take up to the
    unit's 900 s, an SST among it)."""
    for _ in range(limit):
        state = subprocess.run(["systemctl", "is-active", "mariadb"], capture_output=True, text=True).stdout.strip()
        if state not in ("activating", "deactivating", "reloading"):
            return
        time.sleep(1)


def active():
    return subprocess.run(["systemctl", "is-active", "--quiet", "mariadb"]).returncode == 0


def grastate():
    try:
        with open(GRASTATE) as f:
            return dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line and not line.startswith("#"))
    except FileNotFoundError:
        return {}


def joined_before():
    """Whether this node's data belongs to a Galera cluster already (a UUID in grastate.dat)."""
    uuid = grastate().get("uuid", "").strip()
    return uuid not in ("", "00000000-0000-0000-0000-000000000000")


def safe_to_bootstrap():
    return grastate().get("safe_to_bootstrap", "").strip() == "1"


def users(secrets):
    """The users the cluster needs, made once on the first node (Galera replicates them):
    lct_sst for mariabackup, admin for people and dependents. The passwords reach the client
    on its standard input, never its command line."""
    sql = f"""
CREATE USER IF NOT EXISTS 'lct_sst'@'localhost' IDENTIFIED BY '{secrets["sst_password"]}';
GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO 'lct_sst'@'localhost';
CREATE USER IF NOT EXISTS 'admin'@'%' IDENTIFIED BY '{secrets["admin_password"]}';
GRANT ALL PRIVILEGES ON *.* TO 'admin'@'%' WITH GRANT OPTION;
"""
    subprocess.run(["mariadb", "--batch"], input=sql, text=True, check=True, cwd="/")


def write(path, text, mode, uid, gid):
    try:
        with open(path) as f:
            same = f.read() == text
    except FileNotFoundError:
        same = False
    if same:
        os.chmod(path, mode)
        os.chown(path, uid, gid)
        return False
    tmp = f"{path}.lct-tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, mode)
    os.chown(tmp, uid, gid)
    os.replace(tmp, path)
    return True


if __name__ == "__main__":
    main()

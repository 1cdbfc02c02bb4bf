#!/usr/bin/python3
"""Starts MariaDB on this Galera node if it does not run, once another member runs, and
waits until the node is Synced in a Primary component (the hook after configure.py: the
first node has bootstrapped by then, and every configuration is written).

A new node joins through the members in wsrep_cluster_address and gets their data by SST
(mariabackup, through socat on 4444; Galera picks the donor); MariaDB's unit waits for
that, and this script then for `Synced`. A node that runs already is only checked.
"""

import json
import os
import socket
import subprocess
import sys
import time



def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    cluster = os.environ["LCT_CLUSTER"]
    me = socket.gethostname()
    members = {n["name"]: n["private_ipv4"][0] for n in lines if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "db"}
    if me not in members:
        sys.exit(f"{me} is not a db node of {cluster}")
    if active():
        done = "running"
    else:
        others = [address for name, address in members.items() if name != me]
        wait_for_a_member(others)
        if subprocess.run(["systemctl", "start", "mariadb"], cwd="/").returncode != 0:
            journal = subprocess.run(
                ["journalctl", "-u", "mariadb", "-n", "15", "--no-pager", "-o", "cat"], capture_output=True, text=True
            ).stdout
            sys.stderr.write(journal)
            errors = [line for line in journal.splitlines() if "ERROR" in line]
            sys.exit(f"MariaDB did not join: {errors[-1] if errors else 'see the journal above'}")
        done = "joined"
    status = wait_synced()
    print(f"{me}: {done}, {status['wsrep_local_state_comment']} in a {status['wsrep_cluster_status']} "
          f"component of {status['wsrep_cluster_size']}")


def active():
    return subprocess.run(["systemctl", "is-active", "--quiet", "mariadb"]).returncode == 0


def wait_for_a_member(addresses, timeout=120):
    """Until one of the other members accepts Galera connections (4567)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for address in addresses:
            try:
                socket.create_connection((address, 4567), 2).close()
                return
            except OSError:
                pass
        time.sleep(1)
    sys.exit(
        f"no other member runs Galera after {timeout}s ({', '.join(addresses) or 'there is none'}): "
        "after every node stopped uncleanly none is safe to bootstrap; set `safe_to_bootstrap: 1` in "
        "/var/lib/mysql/grastate.dat on the node with the highest seqno (`galera_recovery` prints it), "
        "then `lct-plan start` again"
    )


def status():
    out = subprocess.run(
        ["mariadb", "--batch", "--skip-column-names", "-e", "SHOW GLOBAL STATUS LIKE 'wsrep_%'"],
        capture_output=True, text=True, cwd="/",
    )
    return dict(line.split("\t", 1) for line in out.stdout.splitlines() if "\t" in line)


def wait_synced(timeout=300):
    deadline = time.monotonic() + timeout
    last = {}
    while time.monotonic() < deadline:
        last = status()
        if last.get("wsrep_local_state_comment") == "Synced" and last.get("wsrep_cluster_status") == "Primary":
            return last
        time.sleep(1)
    state = last.get("wsrep_local_state_comment", "no answer")
    sys.exit(f"not Synced in a Primary component after {timeout}s: {state}, {last.get('wsrep_cluster_status', '?')}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Makes this node a GlusterFS server of the plan's replicated volume, from lct's inventory.

Standard input: the plan-secrets line (none here), then the node records. The servers are
the nodes of this cluster's `server` group, in the order of their numbers; each is addressed
by its FQDN (from /etc/hosts, which the `hosts` action wrote): peers are probed by name and
bricks named FQDN:/srv/gluster/brick/data, so a client resolves them through whichever view
it sits in. Bricks sit on the node's lct volume NODE-brick (made ext4 when it holds no file
system; any other content but ext4 or XFS is refused, never formatted), in a directory
below the mount point, so that an unmounted volume leaves the brick missing rather than
filling the root file system.

Events (every step idempotent: a re-run after a failure finishes the job):
* created: every server prepares its brick and starts glusterd; the first probes the
  others, creates the volume (replica 3, bricks in server order: each three make a replica
  set) and starts it; the others probe the first back by name (so that it, too, is known by
  its FQDN rather than the address it probed from);
* node-added: the new servers prepare bricks and start glusterd; the first server that was
  there before probes them, adds their bricks in sets of three and rebalances, waiting until
  the rebalance has completed;
* node-removing: the first server that stays checks that the leaving servers' bricks are
  whole replica sets, moves their files off (remove-brick start, waited for until completed),
  commits, and detaches the leaving peers;
* started: bricks mounted again and glusterd running; the first server starts the volume's
  missing brick processes (`volume start force`).
"""

import json
import os
import re
import socket
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

MOUNT = "/srv/gluster/brick"
BRICK = f"{MOUNT}/data"
REPLICA = 3
TIMEOUT = 300
GLUSTERD_VOL = "/etc/glusterfs/glusterd.vol"
# The highest port a brick process takes (the firewall opens 49152-49251).
MAX_PORT = 49251


def main():
    lines = [json.loads(line) for line in sys.stdin if line.strip()]
    cluster = os.environ["LCT_CLUSTER"]
    event = os.environ["LCT_EVENT"]
    volume = os.environ["LCT_PARAM_VOLUME"]
    if not re.fullmatch(r"[a-z][a-z0-9-]{0,30}", volume):
        sys.exit(f"parameter volume: {volume!r} is not a volume name")
    nodes = [n for n in lines if n.get("kind") == "node" and n["cluster"] == cluster and n["group"] == "server"]
    servers = sorted((n["name"] for n in nodes), key=number)
    me = socket.gethostname()
    if me not in servers:
        sys.exit(f"{me} is not a server of {cluster}")
    fqdn = {n["name"]: fqdn_of(n["name"], n["private_ipv4"][0]) for n in nodes}
    added = names(os.environ.get("LCT_NODES_ADDED", ""))
    removed = names(os.environ.get("LCT_NODES_REMOVED", ""))

    if event == "node-removing":
        staying = [s for s in servers if s not in removed]
        if me == staying[0]:
            remove_bricks(volume, [fqdn[s] for s in removed if s in fqdn])
            say = f"removed the bricks of {','.join(removed)}"
        else:
            say = "unchanged" if me not in removed else "leaving (the first server moves the files off)"
        print(f"{me}: {event}: {say}")
        return

    prepare_brick(me)
    start_glusterd()
    if event == "created":
        if len(servers) % REPLICA:
            sys.exit(f"{len(servers)} servers: a replica-{REPLICA} volume needs a multiple of {REPLICA}")
        first = servers[0]
        if me == first:
            for s in servers[1:]:
                probe(fqdn[s])
            wait_connected([fqdn[s] for s in servers[1:]])
            create_volume(volume, [fqdn[s] for s in servers])
            say = f"volume {volume} started on {len(servers)} bricks"
        else:
            wait(f"{first} to probe this server", lambda: peers())
            probe(fqdn[first])
            say = "in the pool"
    elif event == "node-added":
        before = [s for s in servers if s not in added]
        if me == before[0]:
            if len(added) % REPLICA:
                sys.exit(f"{len(added)} new servers: bricks are added in sets of {REPLICA}")
            for s in added:
                probe(fqdn[s])
            wait_connected([fqdn[s] for s in servers if s != me])
            add_bricks(volume, [fqdn[s] for s in servers])
            say = f"volume {volume} on {len(bricks_of(volume))} bricks, rebalanced"
        else:
            say = "ready"
    else:
        # One server asks (glusterd takes a cluster-wide lock per transaction: three at
        # once would refuse each other).
        if me == servers[0] and volume_exists(volume):
            gluster("volume", "start", volume, "force")
        say = "glusterd runs"
    print(f"{me}: {event}: {say}")


def names(text):
    return [n for n in text.split(",") if n]


def number(name):
    match = re.search(r"(\d+)$", name)
    return (int(match.group(1)) if match else 0, name)


def fqdn_of(name, address):
    """The node's FQDN: the name on its /etc/hosts line that is `name.` and a domain."""
    with open("/etc/hosts") as f:
        for line in f:
            fields = line.split("#", 1)[0].split()
            if fields and fields[0] == address:
                for host in fields[1:]:
                    if host.startswith(f"{name}."):
                        return host
    sys.exit(f"/etc/hosts has no FQDN for {name} at {address} (the hosts action runs first)")


def prepare_brick(me):
    """This server's volume formatted (only when it holds nothing) and mounted, its brick
    directory made."""
    device = f"/dev/disk/by-id/scsi-0Linode_Volume_{me}-brick"
    if not os.path.exists(device):
        sys.exit(f"{device}: this server's brick volume is not attached")
    if not is_mounted(MOUNT):
        kind = run(["blkid", "-o", "value", "-s", "TYPE", device], check=False).stdout.strip()
        if not kind:
            if run(["blkid", "-p", device], check=False).returncode != 2:
                sys.exit(f"{device}: holds something blkid cannot name; not formatting it")
            run(["mkfs.ext4", "-q", "-L", "brick", device])
        elif kind not in ("ext4", "xfs"):
            sys.exit(f"{device}: holds {kind}, not ext4 or XFS; not formatting it")
        os.makedirs(MOUNT, exist_ok=True)
        run(["mount", device, MOUNT])
    os.makedirs(BRICK, exist_ok=True)


def is_mounted(path):
    return run(["findmnt", "--mountpoint", path], check=False).returncode == 0


def start_glusterd():
    """glusterd with brick ports kept below MAX_PORT, enabled and running."""
    with open(GLUSTERD_VOL) as f:
        text = f.read()
    limited, count = re.subn(r"(?m)^(\s*option\s+max-port\s+)\d+", rf"\g<1>{MAX_PORT}", text)
    if not count:
        limited = text.replace("end-volume", f"    option max-port {MAX_PORT}\nend-volume", 1)
    if limited != text:
        tmp = f"{GLUSTERD_VOL}.lct-tmp"
        with open(tmp, "w") as f:
            f.write(limited)
        os.replace(tmp, GLUSTERD_VOL)
        run(["systemctl", "restart", "glusterd"])
    run(["systemctl", "enable", "--now", "--quiet", "glusterd"])
    wait("glusterd to answer", lambda: gluster("pool", "list", check=False).returncode == 0)


def gluster(*args, check=True, xml=False):
    argv = ["gluster", "--mode=script"] + (["--xml"] if xml else []) + list(args)
    out = run(argv, check=False)
    if check and out.returncode != 0:
        sys.exit(f"gluster {' '.join(args)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def probe(host):
    """`peer probe`, again while the other glusterd does not answer yet."""
    wait(f"peer probe {host}", lambda: gluster("peer", "probe", host, check=False).returncode == 0)


def peers():
    """The peers this glusterd knows: {every name of each: whether it is connected and in
    the cluster (a peer just probed is connected before it is accepted: add-brick refuses
    it until then)}."""
    out = gluster("peer", "status", xml=True, check=False)
    if out.returncode != 0:
        return {}
    found = {}
    for peer in ET.fromstring(out.stdout).iter("peer"):
        connected = peer.findtext("connected") == "1" and peer.findtext("stateStr") == "Peer in Cluster"
        for host in [peer.findtext("hostname")] + [h.text for h in peer.iter("hostname")]:
            if host:
                found[host] = connected
    return found


def wait_connected(hosts):
    wait(f"{','.join(hosts)} to be connected peers in the cluster", lambda: all(peers().get(h) for h in hosts))


def volume_exists(volume):
    return gluster("volume", "info", volume, check=False).returncode == 0


def bricks_of(volume):
    """The volume's bricks (HOST:PATH), in order: each REPLICA of them make a replica set."""
    out = gluster("volume", "info", volume, xml=True)
    return [b.findtext("name") or b.text.strip() for b in ET.fromstring(out.stdout).iter("brick")]


def create_volume(volume, hosts):
    if not volume_exists(volume):
        bricks = [f"{h}:{BRICK}" for h in hosts]
        gluster("volume", "create", volume, "replica", str(REPLICA), "transport", "tcp", *bricks)
    info = ET.fromstring(gluster("volume", "info", volume, xml=True).stdout)
    if info.findtext(".//volume/status") != "1":
        gluster("volume", "start", volume)
    wait_online(volume)


def wait_online(volume):
    """Until every brick of the volume has its process online."""

    def online():
        out = gluster("volume", "status", volume, xml=True, check=False)
        if out.returncode != 0:
            return False
        status = {
            f"{n.findtext('hostname')}:{n.findtext('path')}": n.findtext("status") == "1"
            for n in ET.fromstring(out.stdout).iter("node")
        }
        return all(status.get(b) for b in bricks_of(volume))

    wait(f"the bricks of {volume} to be online", online)


def add_brick_set(volume, bricks):
    """`volume add-brick` of one replica set, asked again while another server's glusterd has
    not connected to a new peer yet: a probe reaches the other servers a moment after it
    returns, and their pre-validation then refuses ("Pre Validation failed on gfs-2...: Host
    gfs-5... not connected"), having changed nothing. Any other refusal stops the hook."""
    args = ["volume", "add-brick", volume, "replica", str(REPLICA), *bricks]

    def added():
        out = gluster(*args, check=False)
        if out.returncode == 0:
            return True
        said = out.stderr.strip() or out.stdout.strip()
        if "Pre Validation failed" not in said or "not connected" not in said:
            sys.exit(f"gluster {' '.join(args)}: {said}")
        print(f"add-brick: {said}; asking again", file=sys.stderr)
        return False

    wait(f"the servers to connect the new peers for add-brick {' '.join(bricks)}", added)


def add_bricks(volume, hosts):
    """The bricks of servers not in the volume yet, added as replica sets, then rebalanced."""
    have = bricks_of(volume)
    new = [f"{h}:{BRICK}" for h in hosts if f"{h}:{BRICK}" not in have]
    for i in range(0, len(new), REPLICA):
        add_brick_set(volume, new[i : i + REPLICA])
    wait_online(volume)
    if new:
        gluster("volume", "rebalance", volume, "start")
    if new or gluster("volume", "rebalance", volume, "status", check=False).returncode == 0:
        wait_task(volume, ["volume", "rebalance", volume, "status"], "rebalance")


def remove_bricks(volume, leaving):
    """The leaving servers' bricks, whole replica sets only: their files moved to the other
    sets first (remove-brick start, waited for), then committed; the peers detached."""
    if not volume_exists(volume):
        return
    bricks = bricks_of(volume)
    going = [b for b in bricks if b.rsplit(":", 1)[0] in leaving]
    for i in range(0, len(bricks), REPLICA):
        replica_set = bricks[i : i + REPLICA]
        out = [b for b in replica_set if b in going]
        if out and len(out) != len(replica_set):
            sys.exit(f"{','.join(out)}: part of the replica set {','.join(replica_set)}; remove whole sets of {REPLICA}")
    if going:
        if len(going) == len(bricks):
            sys.exit("every brick of the volume would go; destroy the cluster instead")
        status = gluster("volume", "remove-brick", volume, *going, "status", check=False)
        if status.returncode != 0:
            gluster("volume", "remove-brick", volume, *going, "start")
        wait_task(volume, ["volume", "remove-brick", volume, *going, "status"], "remove-brick")
        gluster("volume", "remove-brick", volume, *going, "commit")
    for host in leaving:
        if host in peers():
            gluster("peer", "detach", host)


def wait_task(volume, status_args, what):
    """Until a rebalance or remove-brick reports completed on every node (a failure stops)."""

    def done():
        out = gluster(*status_args, xml=True, check=False)
        if out.returncode != 0:
            return False
        root = ET.fromstring(out.stdout)
        states = [s.text for s in root.iter("statusStr")]
        if any(s == "failed" for s in states):
            sys.exit(f"{what} of {volume} failed: {out.stdout.strip()}")
        return bool(states) and all(s == "completed" for s in states)

    wait(f"the {what} of {volume} to complete", done)


def run(argv, check=True):
    out = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd="/")
    if check and out.returncode != 0:
        sys.exit(f"{' '.join(argv)}: {out.stderr.strip() or out.stdout.strip()}")
    return out


def wait(what, done):
    deadline = time.monotonic() + TIMEOUT
    while not done():
        if time.monotonic() > deadline:
            sys.exit(f"waited {TIMEOUT}s for {what}")
        time.sleep(1)


if __name__ == "__main__":
    main()

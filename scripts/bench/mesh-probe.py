#!/usr/bin/env python3
"""scripts/bench/mesh's probes: every node reaching a node BY NAME, all at once, each on its own.

  mesh-probe.py NAME DEADLINE_S NETNS...

One process per namespace node, set up before the clock starts, as a node's own program is
already running in life: it enters the node's network namespace and, as `ip netns exec`
does, a mount namespace of its own with the node's /etc/netns/NETNS/* bound over /etc/*
(so /etc/hosts is the node's, the file lct-hosts writes). Once every node's is set up,
`ready` is printed, and all wait for SIGUSR1 to this process (the clock's start), then are
let go at once. From then on, each node on its own: NAME resolved through glibc's getaddrinfo (the node's
/etc/hosts by nsswitch, as `ping NAME` resolves it), an ICMP echo sent to the address found
(from the node's namespace, so through its own routes and mesh), every 10 ms until a reply
from that address comes back. While NAME does not resolve, the process sleeps on inotify
on the node's hosts file (no CPU, and no polling delay when lct-hosts writes it).

Output: one line per node, `NETNS ADDRESS EPOCH_SECONDS` (the reply's arrival,
time.time(), comparable with bash's $EPOCHREALTIME), or `NETNS - unreached` when
DEADLINE_S passed first; exit status 1 when any node was unreached.
"""
import ctypes, os, select, signal, socket, struct, sys, time

CLONE_NEWNS, CLONE_NEWNET = 0x00020000, 0x40000000
MS_BIND, MS_REC, MS_SLAVE = 4096, 16384, 1 << 19
IN_MODIFY, IN_CLOSE_WRITE, IN_ATTRIB = 0x2, 0x8, 0x4
libc = ctypes.CDLL(None, use_errno=True)


def check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def enter(netns):
    """This process into the node's network namespace and a mount namespace where /etc is
    the node's (what `ip netns exec NETNS` does before it runs a program)."""
    fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    check(libc.setns(fd, CLONE_NEWNET), f"setns {netns}")
    os.close(fd)
    check(libc.unshare(CLONE_NEWNS), "unshare")
    check(libc.mount(b"", b"/", b"none", MS_SLAVE | MS_REC, None), "mount --make-rslave /")
    etc = f"/etc/netns/{netns}"
    for name in sorted(os.listdir(etc)) if os.path.isdir(etc) else []:
        src, dst = os.path.join(etc, name).encode(), os.path.join("/etc", name).encode()
        check(libc.mount(src, dst, b"none", MS_BIND, None), f"bind {etc}/{name}")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def echo_request(ident, seq):
    header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    payload = b"lct-mesh-probe"
    return struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload


def resolve(name):
    """NAME's IPv4 address as the node resolves it, or None."""
    try:
        return socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_RAW)[0][4][0]
    except socket.gaierror:
        return None


def probe(netns, name, go, deadline_s, ready, out):
    """Reaches NAME from NETNS once `go` (a pipe) closes; whether it did within deadline_s."""
    enter(netns)
    inotify = libc.inotify_init1(os.O_NONBLOCK)
    check(0 if inotify >= 0 else -1, "inotify_init1")
    watch = libc.inotify_add_watch(inotify, b"/etc/hosts", IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB)
    check(0 if watch >= 0 else -1, "inotify_add_watch /etc/hosts")
    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    # Warmed up before the clock: the resolver's first call (nsswitch, the hosts file) and
    # this copy of the interpreter's pages (a forked child's first touches fault them in),
    # so the time after the start is the node's lookup and echo, not this program's start.
    resolve("localhost")
    echo_request(ident, 0)
    os.write(ready, b"r")
    os.read(go, 1)  # end of file when the parent lets every node go at once
    end = time.monotonic() + deadline_s
    seq = 0
    while time.monotonic() < end:
        address = resolve(name)
        if address is None:
            # Asleep until the hosts file changes (or a second, in case an event was missed:
            # polling more often costs the machine the sync is measured on).
            select.select([inotify], [], [], 1.0)
            try:
                os.read(inotify, 4096)
            except BlockingIOError:
                pass
            continue
        seq = (seq + 1) & 0xFFFF
        icmp.sendto(echo_request(ident, seq), (address, 0))
        wait_until = time.monotonic() + 0.01
        while (left := wait_until - time.monotonic()) > 0:
            if not select.select([icmp], [], [], left)[0]:
                break
            packet, (source, _) = icmp.recvfrom(2048)
            ihl = (packet[0] & 0x0F) * 4
            kind, _, _, rid, _ = struct.unpack_from("!BBHHH", packet, ihl)
            if kind == 0 and rid == ident and source == address:
                os.write(out, f"{netns} {address} {time.time():.6f}\n".encode())
                return True
    os.write(out, f"{netns} - unreached\n".encode())
    return False


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    name, deadline_s, spaces = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
    go_r, go_w = os.pipe()
    ready_r, ready_w = os.pipe()
    result_r, result_w = os.pipe()
    children = []
    for netns in spaces:
        pid = os.fork()
        if pid == 0:
            for fd in (ready_r, result_r, go_w):
                os.close(fd)
            try:
                reached = probe(netns, name, go_r, deadline_s, ready_w, result_w)
            except Exception as e:  # a node that cannot be probed fails the run, by name
                os.write(2, f"mesh-probe.py: {netns}: {e}\n".encode())
                os.write(ready_w, b"e")
                os._exit(2)
            os._exit(0 if reached else 1)
        children.append(pid)
    for fd in (ready_w, result_w, go_r):
        os.close(fd)
    states = b""
    while len(states) < len(spaces):
        chunk = os.read(ready_r, 4096)
        if not chunk:
            break
        states += chunk
    if states != b"r" * len(spaces):
        for pid in children:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        for pid in children:
            os.waitpid(pid, 0)
        sys.exit("mesh-probe.py: not every node could be probed (above)")
    print("ready", flush=True)
    signal.sigwait({signal.SIGUSR1})
    os.close(go_w)
    with os.fdopen(result_r) as results:
        for line in results:
            print(line, end="", flush=True)
    failed = sum(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) != 0 for pid in children)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

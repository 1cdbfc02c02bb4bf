#!/usr/bin/env python3
"""The parts of scripts/bench/fw's watch measurement that run inside namespaces.

  listen PORT                      accept and close TCP connections on PORT (the guarded service)
  probe ADDR PORT OUT STOP         a new non-blocking TCP connect to ADDR:PORT every 5 ms until
                                   STOP exists; OUT gets the send time (CLOCK_MONOTONIC, ns) of
                                   each probe that connected (was admitted)
  measure RUNS WATCHER_PID OUT     RUNS times: `nft flush ruleset`, then wait for the watcher's
                                   restore; OUT gets one line per run: the flush's commit time,
                                   the restore's commit time (both as nf_tables' NEWGEN
                                   notifications arrive here), the time the command started and
                                   the time the flushing nft exited
  measure-owned RUNS OUT           RUNS times: a table `inet other` added, then `nft flush
                                   ruleset` under a watcher that owns lct's table; OUT gets one
                                   line per run: the time the command started, the time it
                                   exited, whether its flush committed (a NEWGEN of its pid)
                                   and whether lct's table was there after it (1 or 0)
"""
import os, select, socket, struct, subprocess, sys, time

NETLINK_NETFILTER, NFNLGRP_NFTABLES = 12, 7
NEWGEN = (10 << 8) | 15  # NFNL_SUBSYS_NFTABLES, NFT_MSG_NEWGEN
SO_RCVBUFFORCE = 33


def newgens(data):
    """The committing pid of each NEWGEN in one datagram."""
    pids, off = [], 0
    while off + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, off)
        if length < 16:
            break
        if kind == NEWGEN:
            pid, a = None, off + 20
            while a + 4 <= off + length:
                alen, atype = struct.unpack_from("=HH", data, a)
                if alen < 4:
                    break
                if atype & 0x3FFF == 2:  # NFTA_GEN_PROC_PID
                    pid = struct.unpack_from(">I", data, a + 4)[0]
                a += (alen + 3) & ~3
            pids.append(pid)
        off += (length + 3) & ~3
    return pids


def measure(runs, watcher, out):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
    # A 10,000-peer restore comes as 10,000 element notifications before its NEWGEN.
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    lines = []
    for _ in range(runs):
        time.sleep(0.2)  # the prober's steady state between runs
        started = time.monotonic_ns()
        nft = subprocess.Popen(["nft", "flush", "ruleset"])
        # nft's exit, as a pidfd turning readable: its socket is closed by then, and the
        # close holds nf_tables' commit lock through an RCU grace period (see docs/benchmarks.md).
        pidfd = os.pidfd_open(nft.pid)
        flushed = restored = exited = None
        deadline = time.monotonic() + 5.0
        while restored is None or exited is None:
            left = deadline - time.monotonic()
            waiting = [sock] + ([pidfd] if exited is None else [])
            ready = select.select(waiting, [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                sys.exit("no restore within 5 s")
            now = time.monotonic_ns()
            if pidfd in ready:
                exited = now
            if sock in ready:
                for pid in newgens(sock.recv(1 << 20)):
                    if pid == nft.pid:
                        flushed = now
                    elif pid == watcher and flushed is not None and restored is None:
                        restored = now
        nft.wait()
        os.close(pidfd)
        lines.append(f"{flushed} {restored} {started} {exited}\n")
    open(out, "w").writelines(lines)


def measure_owned(runs, out):
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.bind((0, 1 << (NFNLGRP_NFTABLES - 1)))
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 64 << 20)
    lines = []
    for _ in range(runs):
        time.sleep(0.2)  # the prober's steady state between runs
        # Something for the flush to take, so that it commits.
        subprocess.run(["nft", "add", "table", "inet", "other"], check=True)
        started = time.monotonic_ns()
        nft = subprocess.Popen(["nft", "flush", "ruleset"])
        nft.wait()
        exited = time.monotonic_ns()
        committed = 0
        while select.select([sock], [], [], 0.05)[0]:
            committed |= int(nft.pid in newgens(sock.recv(1 << 20)))
        kept = int(subprocess.run(["nft", "list", "table", "inet", "lct"], stdout=subprocess.DEVNULL).returncode == 0)
        lines.append(f"{started} {exited} {committed} {kept}\n")
    open(out, "w").writelines(lines)


def probe(addr, port, out, stop):
    pending, admitted = {}, []
    poller = select.epoll()
    next_send = time.monotonic_ns()
    while not os.path.exists(stop):
        now = time.monotonic_ns()
        if now >= next_send:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setblocking(False)
            s.connect_ex((addr, port))
            pending[s.fileno()] = (s, now)
            poller.register(s.fileno(), select.EPOLLOUT)
            # Late (a busy machine): the next one 5 ms from now, never a burst to catch up.
            next_send += 5_000_000
            if next_send <= now:
                next_send = now + 5_000_000
        for fd, _ in poller.poll(max(0, next_send - time.monotonic_ns()) / 1e9):
            s, sent = pending.pop(fd)
            poller.unregister(fd)
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                admitted.append(sent)
            s.close()
        # A dropped SYN is retried after 1 s: given up at 0.5 s, so a retry never counts.
        for fd, (s, sent) in list(pending.items()):
            if time.monotonic_ns() - sent > 500_000_000:
                poller.unregister(fd)
                s.close()
                del pending[fd]
    open(out, "w").write("".join(f"{t}\n" for t in admitted))


def listen(port):
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", port))
    server.listen(1024)
    while True:
        server.accept()[0].close()


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "listen":
        listen(int(args[0]))
    elif mode == "probe":
        probe(args[0], int(args[1]), args[2], args[3])
    elif mode == "measure-owned":
        measure_owned(int(args[0]), args[1])
    elif mode == "measure":
        measure(int(args[0]), int(args[1]), args[2])
    else:
        sys.exit(f"unknown mode {mode}")

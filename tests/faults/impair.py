"""Packet impairment without netem: loss, delay with jitter and reordering by NFQUEUE verdicts.

Kernels built without `sch_netem` (CONFIG_NET_SCH_NETEM unset, and no modules to load) cannot
run `tc qdisc ... netem`. They usually still have netfilter's NFQUEUE target: iptables hands
each packet leaving a veth to this process, which answers with a verdict — drop it (loss), or
accept it after a delay (latency plus jitter; a packet with a shorter delay overtakes one sent
before it, which is reordering, and `reorder` percent of packets go at once, as netem's
`reorder` does). The netlink messages are the kernel's nfnetlink_queue ABI
(include/uapi/linux/netfilter/nfnetlink_queue.h); only packet ids are copied, never payloads.

Run inside a namespace, one process for all of its queues:

    python impair.py QUEUE:LOSS%:DELAY_MS:JITTER_MS:REORDER% [...]

It binds each queue, prints "ready" once bound, and on SIGTERM prints its counters as one
JSON line (packets seen, dropped, reordered per queue) and exits.
"""

from __future__ import annotations

import heapq
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_VERDICT = 1
NFQNL_MSG_CONFIG = 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_DROP = 0
NF_ACCEPT = 1
NLM_F_REQUEST = 1
NLM_F_ACK = 4
NLMSG_ERROR = 2


def attribute(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((-length) % 4)


class Queues:
    """The netlink socket bound to this namespace's queues, and the verdicts it owes."""

    def __init__(self, specs: dict[int, tuple[float, float, float, float]]) -> None:
        self.specs = specs
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((0, 0))
        self.seq = 0
        self.pending: list[tuple[float, int, int, int]] = []  # (due, order, queue, packet id)
        self.order = 0
        self.counters = {q: {"seen": 0, "dropped": 0, "sent_at_once": 0} for q in specs}
        for queue in specs:
            self.request(
                queue,
                NFQNL_MSG_CONFIG,
                attribute(NFQA_CFG_CMD, struct.pack("!BxH", NFQNL_CFG_CMD_BIND, 0)),
                ack=True,
            )
            self.request(
                queue,
                NFQNL_MSG_CONFIG,
                attribute(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                ack=True,
            )

    def request(self, queue: int, message: int, attrs: bytes, ack: bool = False) -> None:
        self.seq += 1
        body = struct.pack("!BBH", socket.AF_UNSPEC, 0, queue) + attrs
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        header = struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | message, flags, self.seq, 0)
        self.sock.send(header + body)
        if ack:
            reply = self.sock.recv(65536)
            length, kind = struct.unpack_from("=IH", reply)
            if kind == NLMSG_ERROR:
                (error,) = struct.unpack_from("=i", reply, 16)
                if error != 0:
                    raise OSError(-error, f"nfqueue config of queue {queue}: {os.strerror(-error)}")

    def verdict(self, queue: int, packet_id: int, verdict: int) -> None:
        self.request(queue, NFQNL_MSG_VERDICT, attribute(NFQA_VERDICT_HDR, struct.pack("!II", verdict, packet_id)))

    def on_packet(self, queue: int, packet_id: int) -> None:
        loss, delay_ms, jitter_ms, reorder = self.specs[queue]
        counters = self.counters[queue]
        counters["seen"] += 1
        if random.random() < loss:
            counters["dropped"] += 1
            self.verdict(queue, packet_id, NF_DROP)
            return
        if random.random() < reorder:
            counters["sent_at_once"] += 1
            self.verdict(queue, packet_id, NF_ACCEPT)
            return
        wait = max(0.0, random.uniform(delay_ms - jitter_ms, delay_ms + jitter_ms)) / 1000
        self.order += 1
        heapq.heappush(self.pending, (time.monotonic() + wait, self.order, queue, packet_id))

    def receive(self) -> None:
        try:
            data = self.sock.recv(1 << 20, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError as error:  # ENOBUFS: the kernel dropped queued packets (more loss)
            if error.errno == 105:
                return
            raise
        offset = 0
        while offset + 16 <= len(data):
            length, kind = struct.unpack_from("=IH", data, offset)
            if length < 16:
                break
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                (queue,) = struct.unpack_from("!H", data, offset + 18)
                position = offset + 20
                while position + 4 <= offset + length:
                    attr_length, attr_kind = struct.unpack_from("=HH", data, position)
                    if attr_length < 4:
                        break
                    if attr_kind & 0x7FFF == NFQA_PACKET_HDR:
                        (packet_id,) = struct.unpack_from("!I", data, position + 4)
                        if queue in self.specs:
                            self.on_packet(queue, packet_id)
                    position += (attr_length + 3) & ~3
            offset += (length + 3) & ~3

    def release_due(self) -> float | None:
        now = time.monotonic()
        while self.pending and self.pending[0][0] <= now:
            _, _, queue, packet_id = heapq.heappop(self.pending)
            self.verdict(queue, packet_id, NF_ACCEPT)
        return self.pending[0][0] - now if self.pending else None


def parse(arg: str) -> tuple[int, tuple[float, float, float, float]]:
    queue, loss, delay, jitter, reorder = arg.split(":")
    return int(queue), (float(loss) / 100, float(delay), float(jitter), float(reorder) / 100)


def main() -> None:
    specs = dict(parse(arg) for arg in sys.argv[1:])
    queues = Queues(specs)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    while not stopping:
        wait = queues.release_due()
        try:
            readable, _, _ = select.select([queues.sock], [], [], 0.2 if wait is None else min(wait, 0.2))
        except InterruptedError:
            continue
        if readable:
            queues.receive()
    for _, _, queue, packet_id in queues.pending:
        queues.verdict(queue, packet_id, NF_ACCEPT)
    print(json.dumps({str(q): c for q, c in queues.counters.items()}), flush=True)


if __name__ == "__main__":
    main()

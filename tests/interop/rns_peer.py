"""A Python Reticulum (PyPI `rns`) peer for the interop tests: the real RNS stack, driven
through its public API, as an outside witness of mehrd's wire compatibility.

Every command connects to a TCP interface (mehrd's tcp_server or rnsd's TCPServerInterface)
with its own isolated Reticulum instance, prints one JSON line with what it saw, and exits 0
(or prints an error and exits 1 on timeout).

  watch       --connect HOST:PORT --aspect APP.ASPECT
  echo-link   --connect HOST:PORT --destination HEX --name APP.ASPECT --message TEXT
  announce    --connect HOST:PORT --name APP.ASPECT --app-data TEXT [--seconds N]
"""

import argparse
import json
import os
import sys
import tempfile
import threading
import time

import RNS

CONFIG = """[reticulum]
  enable_transport = No
  share_instance = No
  panic_on_interface_error = No

[logging]
  loglevel = 2

[interfaces]
  [[Upstream]]
    type = TCPClientInterface
    enabled = yes
    target_host = {host}
    target_port = {port}
"""


def start(connect):
    host, port = connect.rsplit(":", 1)
    configdir = tempfile.mkdtemp(prefix="mehr-interop-")
    with open(os.path.join(configdir, "config"), "w") as f:
        f.write(CONFIG.format(host=host, port=port))
    return RNS.Reticulum(configdir=configdir, loglevel=2, logdest=RNS.LOG_FILE)


def emit(**fields):
    print(json.dumps(fields), flush=True)


def fail(message):
    print(json.dumps({"error": message}), flush=True)
    # RNS keeps threads running; leave without waiting for them.
    os._exit(1)


def wait_for(condition, seconds, what):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    fail(f"timed out waiting for {what}")


def watch(args):
    start(args.connect)
    seen = []

    class Handler:
        aspect_filter = args.aspect

        def received_announce(self, destination_hash, announced_identity, app_data, *rest, **named):
            seen.append((destination_hash, announced_identity, app_data or b""))

    RNS.Transport.register_announce_handler(Handler())
    wait_for(lambda: seen, args.timeout, f"an announce of {args.aspect}")
    destination, identity, app_data = seen[0]
    emit(destination=destination.hex(), identity_hash=identity.hash.hex(), app_data=app_data.hex())


def echo_link(args):
    start(args.connect)
    destination_hash = bytes.fromhex(args.destination)
    if not RNS.Transport.has_path(destination_hash):
        RNS.Transport.request_path(destination_hash)
    wait_for(lambda: RNS.Transport.has_path(destination_hash), args.timeout, "a path")
    identity = RNS.Identity.recall(destination_hash)
    app, *aspects = args.name.split(".")
    destination = RNS.Destination(identity, RNS.Destination.OUT, RNS.Destination.SINGLE, app, *aspects)
    replies = []
    established = threading.Event()
    link = RNS.Link(destination, established_callback=lambda l: established.set())
    link.set_packet_callback(lambda message, packet: replies.append(message))
    wait_for(established.is_set, args.timeout, "the link to be established")
    RNS.Packet(link, args.message.encode()).send()
    wait_for(lambda: replies, args.timeout, "a reply over the link")
    link.teardown()
    emit(reply=replies[0].decode(errors="replace"), link_id=link.link_id.hex())


def announce(args):
    start(args.connect)
    identity = RNS.Identity()
    app, *aspects = args.name.split(".")
    destination = RNS.Destination(identity, RNS.Destination.IN, RNS.Destination.SINGLE, app, *aspects)
    emit(destination=destination.hash.hex(), identity_hash=identity.hash.hex())
    deadline = time.time() + args.seconds
    while time.time() < deadline:
        destination.announce(app_data=args.app_data.encode())
        time.sleep(2)


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("watch", "echo-link", "announce"):
        command = commands.add_parser(name)
        command.add_argument("--connect", required=True)
        command.add_argument("--timeout", type=float, default=30)
    commands.choices["watch"].add_argument("--aspect", required=True)
    commands.choices["echo-link"].add_argument("--destination", required=True)
    commands.choices["echo-link"].add_argument("--name", required=True)
    commands.choices["echo-link"].add_argument("--message", required=True)
    commands.choices["announce"].add_argument("--name", required=True)
    commands.choices["announce"].add_argument("--app-data", default="")
    commands.choices["announce"].add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    {"watch": watch, "echo-link": echo_link, "announce": announce}[args.command](args)
    # RNS keeps threads running; leave without waiting for them.
    sys.stdout.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

"""Shared set-up for the cross-check scripts: an isolated Reticulum instance with no
interfaces, and capture of every packet the stack tries to send.

These scripts are Mehr test code that drives the Python RNS stack through its API; they
exchange hex lines with the Rust test on stdin/stdout."""

import os
import sys
import tempfile

import RNS

CONFIG = """[reticulum]
  enable_transport = False
  share_instance = No
  panic_on_interface_error = No

[logging]
  loglevel = 1

[interfaces]
"""

sent = []


def start():
    """Starts Reticulum in a fresh temp dir and captures outbound packets instead of
    transmitting them."""
    configdir = tempfile.mkdtemp(prefix="mehr-rns-")
    with open(os.path.join(configdir, "config"), "w") as f:
        f.write(CONFIG)
    reticulum = RNS.Reticulum(configdir=configdir, loglevel=1, logdest=RNS.LOG_FILE)

    def capture(packet):
        if not packet.packed:
            packet.pack()
        sent.append(packet.raw)
        return True

    RNS.Transport.outbound = capture
    return reticulum


def take_sent():
    """The one packet sent since the last call."""
    if len(sent) != 1:
        fail(f"expected exactly one outbound packet, got {len(sent)}")
    return sent.pop()


def out(key, value):
    if isinstance(value, (bytes, bytearray)):
        value = value.hex()
    print(f"{key}={value}", flush=True)


def read_hex(expected_key):
    line = sys.stdin.readline().strip()
    key, _, value = line.partition("=")
    if key != expected_key:
        fail(f"expected {expected_key}=..., got {line!r}")
    return bytes.fromhex(value)


def parse_packet(raw):
    packet = RNS.Packet(None, raw)
    if not packet.unpack():
        fail("packet did not unpack")
    return packet


def fail(message):
    print(f"error={message}", flush=True)
    sys.exit(1)

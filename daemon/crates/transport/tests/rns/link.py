"""A link handshake and traffic with Python RNS on one side and the Rust test on the other.

argv[1]: the role Python plays, `initiator` or `responder`.
argv[2]: private key (hex) of the identity that owns the `mehr.node` destination.
argv[3] (initiator only): private key (hex) Python identifies itself with.

Line protocol on stdin/stdout (hex values):
  initiator: -> request, <- proof, -> status, rtt, data, <- data, -> proof, received, identify, close
  responder: <- request, -> proof, <- rtt, -> status, <- data, -> proof, received, data,
             <- proof_result check, <- identify, -> remote_identity, <- close, -> status"""

import sys
import time

import RNS

import harness

harness.start()
role = sys.argv[1]
owner = RNS.Identity.from_bytes(bytes.fromhex(sys.argv[2]))
received = []


def on_packet(data, packet):
    received.append(data)


def wait_received():
    deadline = time.time() + 5
    while not received and time.time() < deadline:
        time.sleep(0.01)
    if not received:
        harness.fail("no packet reached the link callback")
    return received.pop()


if role == "initiator":
    public_only = RNS.Identity(create_keys=False)
    public_only.load_public_key(owner.get_public_key())
    destination = RNS.Destination(public_only, RNS.Destination.OUT, RNS.Destination.SINGLE, "mehr", "node")
    destination.set_proof_strategy(RNS.Destination.PROVE_ALL)
    link = RNS.Link(destination)
    link.set_packet_callback(on_packet)
    harness.out("request", harness.take_sent())

    link.validate_proof(harness.parse_packet(harness.read_hex("proof")))
    harness.out("status", "active" if link.status == RNS.Link.ACTIVE else f"state-{link.status}")
    harness.out("rtt", harness.take_sent())

    RNS.Packet(link, b"hello from python").send()
    harness.out("data", harness.take_sent())

    packet = harness.parse_packet(harness.read_hex("data"))
    packet.link = link
    link.receive(packet)
    harness.out("proof", harness.take_sent())
    harness.out("received", wait_received())

    me = RNS.Identity.from_bytes(bytes.fromhex(sys.argv[3]))
    link.identify(me)
    harness.out("identify", harness.take_sent())

    link.teardown()
    harness.out("close", harness.take_sent())

elif role == "responder":
    destination = RNS.Destination(owner, RNS.Destination.IN, RNS.Destination.SINGLE, "mehr", "node")
    destination.set_proof_strategy(RNS.Destination.PROVE_ALL)
    established = []
    destination.set_link_established_callback(lambda link: established.append(link))

    request = harness.parse_packet(harness.read_hex("request"))
    request.destination = destination
    link = RNS.Link.validate_request(destination, request.data, request)
    if link is None:
        harness.fail("link request rejected")
    link.set_packet_callback(on_packet)
    harness.out("proof", harness.take_sent())

    link.receive(harness.parse_packet(harness.read_hex("rtt")))
    harness.out("status", "active" if link.status == RNS.Link.ACTIVE and established else f"state-{link.status}")

    packet = harness.parse_packet(harness.read_hex("data"))
    packet.link = link
    link.receive(packet)
    harness.out("proof", harness.take_sent())
    harness.out("received", wait_received())

    RNS.Packet(link, b"hello from python").send()
    harness.out("data", harness.take_sent())

    link.receive(harness.parse_packet(harness.read_hex("identify")))
    remote = link.get_remote_identity()
    harness.out("remote_identity", remote.hash if remote else "none")

    link.receive(harness.parse_packet(harness.read_hex("close")))
    harness.out("status", "closed" if link.status == RNS.Link.CLOSED else f"state-{link.status}")
else:
    harness.fail(f"unknown role {role}")

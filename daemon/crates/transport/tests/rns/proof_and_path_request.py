"""Delivery proofs and path requests.

argv[1]: private key (hex) of the identity owning Python's `mehr.node` destination.
Reads `packet=<hex>` (a DATA packet the Rust side encrypted to that destination), delivers it,
prints `plaintext` and the implicit `proof` Python sends; then prints a `path_request` Python
makes for `argv[2]`."""

import sys

import RNS

import harness

harness.start()
owner = RNS.Identity.from_bytes(bytes.fromhex(sys.argv[1]))
destination = RNS.Destination(owner, RNS.Destination.IN, RNS.Destination.SINGLE, "mehr", "node")
destination.set_proof_strategy(RNS.Destination.PROVE_ALL)
delivered = []
destination.set_packet_callback(lambda data, packet: delivered.append(data))

packet = harness.parse_packet(harness.read_hex("packet"))
packet.destination = destination
if not destination.receive(packet):
    harness.fail("destination did not accept the packet")
harness.out("plaintext", delivered[0] if delivered else b"")
packet.prove()
harness.out("proof", harness.take_sent())

RNS.Transport.request_path(bytes.fromhex(sys.argv[2]))
harness.out("path_request", harness.take_sent())

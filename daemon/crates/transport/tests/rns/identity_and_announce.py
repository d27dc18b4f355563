"""Identity hashes, destination hashes and announces, in both directions.

argv[1]: 64-byte private key (hex) for the Python-side identity.
Prints the hashes Python derives, an announce Python built, then validates announces the
Rust side sends (one per line, `announce=<hex>`) until `done`."""

import sys

import RNS

import harness

harness.start()
identity = RNS.Identity.from_bytes(bytes.fromhex(sys.argv[1]))
harness.out("identity_hash", identity.hash)
harness.out("public_key", identity.get_public_key())
harness.out("mehr_node_hash", RNS.Destination.hash(identity, "mehr", "node"))
harness.out("path_request_hash", RNS.Destination.hash(None, "rnstransport", "path", "request"))

destination = RNS.Destination(identity, RNS.Destination.IN, RNS.Destination.SINGLE, "mehr", "node")
announce = destination.announce(app_data=b"\x4e\x10python-app-data", send=False)
announce.pack()
harness.out("announce", announce.raw)

ratchet_destination = RNS.Destination(identity, RNS.Destination.IN, RNS.Destination.SINGLE, "mehr", "ratcheted")
ratchet_destination.enable_ratchets(harness.tempfile.mktemp(prefix="mehr-ratchets-"))
ratchet_announce = ratchet_destination.announce(app_data=b"r", send=False)
ratchet_announce.pack()
harness.out("ratchet_announce", ratchet_announce.raw)
harness.out("ratchet_private", ratchet_destination.ratchets[0])

for line in sys.stdin:
    line = line.strip()
    if line == "done":
        break
    key, _, value = line.partition("=")
    packet = harness.parse_packet(bytes.fromhex(value))
    valid = RNS.Identity.validate_announce(packet)
    harness.out("valid", "yes" if valid else "no")
    if valid:
        harness.out("app_data", RNS.Identity.recall_app_data(packet.destination_hash) or b"")

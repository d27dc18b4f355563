"""SINGLE-destination encryption in both directions.

argv[1]: private key (hex) of the Python identity; argv[2]: public key (hex) of the Rust
identity; argv[3]: a ratchet public key (hex) the Rust side holds the secret of;
argv[4]: a ratchet private key (hex) for the Python side.
Prints ciphertexts Python made for Rust (plain, to the ratchet, and as a packed DATA packet),
then decrypts `ciphertext=<hex>` lines from Rust and echoes the plaintexts."""

import sys

import RNS

import harness

harness.start()
mine = RNS.Identity.from_bytes(bytes.fromhex(sys.argv[1]))
theirs = RNS.Identity(create_keys=False)
theirs.load_public_key(bytes.fromhex(sys.argv[2]))
rust_ratchet = bytes.fromhex(sys.argv[3])
my_ratchet = bytes.fromhex(sys.argv[4])

harness.out("to_identity", theirs.encrypt(b"python to rust"))
harness.out("to_ratchet", theirs.encrypt(b"python to rust ratchet", ratchet=rust_ratchet))
destination = RNS.Destination(theirs, RNS.Destination.OUT, RNS.Destination.SINGLE, "mehr", "node")
packet = RNS.Packet(destination, b"a whole packet")
packet.pack()
harness.out("packet", packet.raw)

for line in sys.stdin:
    line = line.strip()
    if line == "done":
        break
    key, _, value = line.partition("=")
    ciphertext = bytes.fromhex(value)
    if key == "ciphertext":
        plaintext = mine.decrypt(ciphertext)
    elif key == "ratchet_ciphertext":
        plaintext = mine.decrypt(ciphertext, ratchets=[my_ratchet], enforce_ratchets=True)
    else:
        harness.fail(f"unknown line {key}")
    harness.out("plaintext", plaintext if plaintext is not None else "none")

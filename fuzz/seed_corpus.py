#!/usr/bin/env python3
"""Seeds fuzz/corpus/frame_decoder/ from testdata/vectors (the corpus itself is git-ignored).

Frame vectors are copied as raw bytes. Payload-only vectors are wrapped in a mainnet frame of
their command so the payload parsers start from real data. The 5 GiB extmsg header is also
given a small version (ext_length 3, three payload bytes) that can actually complete.
Usage: python3 fuzz/seed_corpus.py [path/to/dir/holding/vectors]   (default: testdata/ of the checkout)
"""
import hashlib
import pathlib
import struct
import sys

HERE = pathlib.Path(__file__).resolve().parent
SHARED = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "testdata"
OUT = HERE / "corpus" / "frame_decoder"
MAINNET = bytes.fromhex("e3e1f3e8")


def frame(command: str, payload: bytes) -> bytes:
    checksum = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    return (MAINNET + command.encode().ljust(12, b"\0") + struct.pack("<I", len(payload))
            + checksum + payload)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    vectors = sorted((SHARED / "vectors").glob("*.hex")) + sorted(
        (SHARED / "vectors" / "derived").glob("*.hex"))
    for path in vectors:
        data = bytes.fromhex(path.read_text().strip())
        name = path.stem
        if "_payload" in name:
            # jcl_<command>_payload… or jcl_bsvmain_<command>_payload…
            command = name.split("_payload")[0].split("_")[-1]
            data = frame(command, data)
        (OUT / name).write_bytes(data)
        if name.startswith("extmsg_header"):
            small = data[:36] + struct.pack("<Q", 3) + b"abc"
            (OUT / (name + "_small")).write_bytes(small)
    print(f"{len(list(OUT.iterdir()))} seed(s) in {OUT}")


if __name__ == "__main__":
    main()

# SPDX-License-Identifier: Apache-2.0
# Used by record.sh after tcprewrite --enet-vlan=add: checks that every frame of TAGGED is the frame of
# ORIG with one 802.1Q tag (TPID 0x8100, PCP 0, DEI 0, VID TAG) inserted after the MAC addresses.
"""usage: vlan_check.py ORIG.pcap TAGGED.pcap TAG

tcprewrite 4.4.3 replaces the MAC addresses of IPv6 unicast frames with 33:33:xx:xx:xx:xx (inverted
multicast test, fixed upstream after 4.4.3 by appneta/tcpreplay PR #793). If that is the only
difference, the original MAC addresses are written back into TAGGED (in place) and it says so.
Anything else that differs is an error (exit 1).
"""
import struct
import sys


def read_pcap(path: str) -> tuple[bytes, str, list[tuple[int, bytes, bytes]]]:
    """Returns (global header, byte order, [(offset of record header, record header, frame)])."""
    with open(path, "rb") as f:
        data = f.read()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        bo = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        bo = ">"
    else:
        sys.exit(f"{path}: not a classic pcap file")
    frames = []
    pos = 24
    while pos < len(data):
        hdr = data[pos:pos + 16]
        incl = struct.unpack(bo + "IIII", hdr)[2]
        frames.append((pos, hdr, data[pos + 16:pos + 16 + incl]))
        pos += 16 + incl
    return data[:24], bo, frames


def main() -> None:
    orig_path, tagged_path, tag = sys.argv[1], sys.argv[2], int(sys.argv[3])
    _, obo, orig = read_pcap(orig_path)
    thdr, tbo, tagged = read_pcap(tagged_path)
    if len(orig) != len(tagged):
        sys.exit(f"{tagged_path}: {len(tagged)} frames, {orig_path} has {len(orig)}")
    vlan = struct.pack("!HH", 0x8100, tag & 0x0FFF)
    out = bytearray(open(tagged_path, "rb").read())
    repaired = 0
    for i, ((_, oh, of), (tpos, th, tf)) in enumerate(zip(orig, tagged), 1):
        ots, ous, oinc, olen = struct.unpack(obo + "IIII", oh)
        tts, tus, tinc, tlen = struct.unpack(tbo + "IIII", th)
        if (tts, tus, tinc, tlen) != (ots, ous, oinc + 4, olen + 4):
            sys.exit(f"{tagged_path}: frame {i}: record header {(tts, tus, tinc, tlen)} "
                     f"is not original {(ots, ous, oinc, olen)} + 4 bytes")
        want = of[:12] + vlan + of[12:]
        if tf == want:
            continue
        ipv6 = of[12:14] == b"\x86\xdd"
        if ipv6 and tf[12:] == want[12:] and tf[0:2] == b"\x33\x33" and tf[6:8] == b"\x33\x33":
            out[tpos + 16:tpos + 16 + 12] = of[:12]
            repaired += 1
            continue
        sys.exit(f"{tagged_path}: frame {i} is not the original frame with VLAN {tag} added")
    if repaired:
        with open(tagged_path, "wb") as f:
            f.write(out)
        print(f"{tagged_path}: restored the original MAC addresses of {repaired} IPv6 frames "
              f"(tcprewrite 4.4.3 had set 33:33:...)")


if __name__ == "__main__":
    main()

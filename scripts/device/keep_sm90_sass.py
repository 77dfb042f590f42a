"""Zero, in place, the GPU machine code for every architecture but sm_90 (Hopper) in a
library's CUDA fatbin, keeping PTX and the file's size and layout.

onnxruntime-gpu's CUDA provider is 284 MB, two thirds of it machine code for GPUs the
device machine does not have; zeroed, the package compresses to under the 64 MiB that
may travel to it. The driver loads only the sm_90 code on an H100 or H200, which is kept
byte for byte.

    python scripts/device/keep_sm90_sass.py libonnxruntime_providers_cuda.so
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys

FATBIN_MAGIC = 0xBA55ED50
KIND_SASS = 2
KEEP_ARCH = 90


def fatbin_section(path: str) -> tuple[int, int]:
    table = subprocess.run(["readelf", "-SW", path], capture_output=True, text=True, check=True).stdout
    found = re.search(r"\.nv_fatbin\s+PROGBITS\s+[0-9a-f]+\s+([0-9a-f]+)\s+([0-9a-f]+)", table)
    if not found:
        sys.exit(f"{path} has no .nv_fatbin section")
    return int(found.group(1), 16), int(found.group(2), 16)


def main(path: str) -> None:
    offset, size = fatbin_section(path)
    data = bytearray(open(path, "rb").read())
    position, end, zeroed, kept = offset, offset + size, 0, 0
    while position < end:
        magic, _, header_size, fat_size = struct.unpack_from("<IHHQ", data, position)
        if magic != FATBIN_MAGIC:  # padding between fatbins
            position += 8
            continue
        entry, fat_end = position + header_size, position + header_size + fat_size
        while entry < fat_end:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch = struct.unpack_from("<I", data, entry + 28)[0]
            start = entry + entry_header
            if kind == KIND_SASS and arch != KEEP_ARCH:
                data[start:start + payload] = bytes(payload)
                zeroed += payload
            else:
                kept += payload
            entry = start + payload
        position = fat_end
    open(path, "wb").write(data)
    print(f"{path}: zeroed {zeroed / 1e6:.1f} MB of other architectures' code, kept {kept / 1e6:.1f} MB")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])

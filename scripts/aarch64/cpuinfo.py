"""Print an aarch64 /proc/cpuinfo (Neoverse-N1 entries) for the emulated rootfs; argv[1]: processors.

qemu-user 7.2 lets the guest read the host's x86 /proc/cpuinfo; pytorch-cpuinfo (in onnxruntime
>= 1.28) crashes on it. The entries match qemu's `-cpu neoverse-n1` (MIDR 0x413fd0c1).
"""

from __future__ import annotations

import sys

FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs"


def cpuinfo(processors: int) -> str:
    entry = ("processor\t: {i}\nBogoMIPS\t: 50.00\nFeatures\t: " + FEATURES + "\nCPU implementer\t: 0x41\n"
             "CPU architecture: 8\nCPU variant\t: 0x3\nCPU part\t: 0xd0c\nCPU revision\t: 1\n\n")
    return "".join(entry.format(i=i) for i in range(max(1, processors)))


if __name__ == "__main__":
    sys.stdout.write(cpuinfo(int(sys.argv[1]) if len(sys.argv) > 1 else 1))

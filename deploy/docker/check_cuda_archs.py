"""Build-time check of the GPU image: the compiled mamba-ssm / causal-conv1d kernels
contain machine code (cubins) for every GPU architecture we ship for.

    python check_cuda_archs.py sm_80 sm_90

Runs `cuobjdump --list-elf` (CUDA devel image) on the extension modules
`selective_scan_cuda` (mamba-ssm) and `causal_conv1d_cuda` and fails the docker
build when an architecture is missing, so a wrong build never becomes an image.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys

EXTENSIONS = ("selective_scan_cuda", "causal_conv1d_cuda")


def archs_in_listing(listing: str) -> set[str]:
    """`cuobjdump --list-elf` prints one line per embedded cubin, e.g.
    'ELF file    1: selective_scan_cuda.1.sm_80.cubin'; return {'sm_80', ...}."""
    return set(re.findall(r"\.(sm_\d+a?)\.cubin", listing))


def extension_path(name: str) -> str:
    spec = importlib.util.find_spec(name)  # locate without importing (no GPU at build time)
    if spec is None or not spec.origin:
        raise FileNotFoundError(f"extension module {name} is not installed")
    return spec.origin


def main(wanted: list[str]) -> int:
    tool = shutil.which("cuobjdump") or "/usr/local/cuda/bin/cuobjdump"
    bad = False
    for name in EXTENSIONS:
        path = extension_path(name)
        listing = subprocess.run([tool, "--list-elf", path], check=True, capture_output=True,
                                 text=True).stdout
        found = archs_in_listing(listing)
        missing = sorted(set(wanted) - found)
        print(f"{name}: {path}: {sorted(found)}" + (f" MISSING {missing}" if missing else ""))
        bad = bad or bool(missing)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["sm_80", "sm_90"]))

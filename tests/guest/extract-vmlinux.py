#!/usr/bin/python3
"""Writes the ELF vmlinux inside an XZ-compressed bzImage to OUT and checks that it has the
PVH entry note (Xen ELF note 18), which lets QEMU start it directly with -kernel: under TCG
that skips seconds of in-guest decompression.

usage: extract-vmlinux.py BZIMAGE OUT"""
import lzma
import struct
import sys

XZ_MAGIC = b'\xfd7zXZ\x00'
PT_NOTE = 4
XEN_ELFNOTE_PHYS32_ENTRY = 18


def has_pvh_note(elf):
    phoff, = struct.unpack_from('<Q', elf, 0x20)
    phentsize, phnum = struct.unpack_from('<HH', elf, 0x36)
    for i in range(phnum):
        ptype, _, offset, _, _, filesz = struct.unpack_from('<IIQQQQ', elf, phoff + i * phentsize)
        if ptype != PT_NOTE:
            continue
        pos, end = offset, offset + filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from('<III', elf, pos)
            name = elf[pos + 12:pos + 12 + namesz].rstrip(b'\0')
            if name == b'Xen' and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    return False


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    image = open(sys.argv[1], 'rb').read()
    start = image.find(XZ_MAGIC)
    if start < 0:
        sys.exit(f'{sys.argv[1]}: no XZ payload (not an XZ-compressed bzImage)')
    elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(image[start:])
    if elf[:4] != b'\x7fELF':
        sys.exit(f'{sys.argv[1]}: the payload is not an ELF file')
    if not has_pvh_note(elf):
        sys.exit(f'{sys.argv[1]}: the kernel has no PVH entry point')
    with open(sys.argv[2], 'wb') as out:
        out.write(elf)


main()

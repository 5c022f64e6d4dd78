#!/usr/bin/env python3
"""Writes a large WASI preview-1 core module for bench/run's "large module" rows.

    gen_large_module.py OUT.wasm [FUNCTIONS] [UNITS]

The module has FUNCTIONS (default 12000) functions `(i64, i64) -> i64`, each made of UNITS
(default 40) blocks of integer arithmetic with its own constants and a branch, so that the
compiler has real work and nothing folds away. `_start` calls every function once through a
table (`call_indirect`), then writes `large module ok` to stdout with `fd_write`. The defaults
give about 20 MB of code. The output depends only on the arguments (no randomness), so a
second generation is byte-identical and a compile cache keyed by content stays valid.
"""

import struct
import sys


def uleb(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def sleb(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if (n == 0 and not byte & 0x40) or (n == -1 and byte & 0x40):
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def vec(items):
    return uleb(len(items)) + b"".join(items)


def section(ident, payload):
    return bytes([ident]) + uleb(len(payload)) + payload


def name(text):
    raw = text.encode()
    return uleb(len(raw)) + raw


I32, I64, FUNC = 0x7F, 0x7E, 0x60
LOCAL_GET, LOCAL_SET, I64_CONST, I32_CONST = 0x20, 0x21, 0x42, 0x41
I64_ADD, I64_MUL, I64_XOR, I64_ROTL, I64_SHR_U, I64_LT_U = 0x7C, 0x7E, 0x85, 0x89, 0x88, 0x54
IF, ELSE, END, BLOCKTYPE_EMPTY = 0x04, 0x05, 0x0B, 0x40


def constant(seed):
    """A deterministic 63-bit constant (splitmix64)."""
    z = (seed * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E5) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & 0x7FFFFFFFFFFFFFFF


def body(index, units):
    # params: 0 = x, 1 = y; locals: 2, 3 (i64)
    code = bytearray()
    for unit in range(units):
        c1 = constant(index * 1000 + unit * 3)
        c2 = constant(index * 1000 + unit * 3 + 1)
        c3 = constant(index * 1000 + unit * 3 + 2)
        code += bytes([LOCAL_GET, 0, I64_CONST]) + sleb(c1) + bytes([I64_MUL, LOCAL_GET, 1, I64_XOR])
        code += bytes([LOCAL_SET, 2])
        code += bytes([LOCAL_GET, 2, I64_CONST]) + sleb(unit % 63 + 1) + bytes([I64_ROTL])
        code += bytes([LOCAL_GET, 0, I64_ADD, LOCAL_SET, 3])
        code += bytes([LOCAL_GET, 3, I64_CONST]) + sleb(c2) + bytes([I64_LT_U, IF, BLOCKTYPE_EMPTY])
        code += bytes([LOCAL_GET, 3, LOCAL_GET, 2, I64_XOR, LOCAL_SET, 0])
        code += bytes([ELSE])
        code += bytes([LOCAL_GET, 3, I64_CONST]) + sleb(c3) + bytes([I64_ADD, LOCAL_SET, 0])
        code += bytes([END])
        code += bytes([LOCAL_GET, 1, LOCAL_GET, 0, I64_CONST, 7, I64_SHR_U, I64_ADD, LOCAL_SET, 1])
    code += bytes([LOCAL_GET, 0, LOCAL_GET, 1, I64_XOR, END])
    locals_decl = vec([uleb(2) + bytes([I64])])
    full = locals_decl + bytes(code)
    return uleb(len(full)) + full


def module(functions, units):
    message = b"large module ok\n"
    types = vec([
        bytes([FUNC]) + vec([bytes([I32])] * 4) + vec([bytes([I32])]),  # 0: fd_write
        bytes([FUNC]) + vec([]) + vec([]),  # 1: _start
        bytes([FUNC]) + vec([bytes([I64])] * 2) + vec([bytes([I64])]),  # 2: generated
    ])
    imports = vec([name("wasi_snapshot_preview1") + name("fd_write") + b"\x00" + uleb(0)])
    # Function indices: 0 = fd_write (import), 1..=functions = generated, functions+1 = _start.
    start_index = functions + 1
    funcs = vec([uleb(2)] * functions + [uleb(1)])
    table = vec([b"\x70" + b"\x00" + uleb(functions)])
    memory = vec([b"\x00" + uleb(1)])
    exports = vec([
        name("memory") + b"\x02" + uleb(0),
        name("_start") + b"\x00" + uleb(start_index),
    ])
    elem = vec([
        uleb(0) + bytes([I32_CONST]) + sleb(0) + bytes([END])
        + vec([uleb(i) for i in range(1, functions + 1)])
    ])
    # _start: locals 0 = i (i32), 1 = acc (i64)
    start = bytearray()
    start += bytes([0x02, BLOCKTYPE_EMPTY, 0x03, BLOCKTYPE_EMPTY])  # block, loop
    start += bytes([LOCAL_GET, 1, LOCAL_GET, 0, 0xAD])  # acc, (i64.extend_i32_u i)
    start += bytes([LOCAL_GET, 0, 0x11]) + uleb(2) + uleb(0)  # call_indirect type 2 table 0
    start += bytes([LOCAL_SET, 1])
    start += bytes([LOCAL_GET, 0, I32_CONST]) + sleb(1) + bytes([0x6A, 0x22, 0])  # i+1, tee
    start += bytes([I32_CONST]) + sleb(functions) + bytes([0x49, 0x0D, 0])  # lt_u, br_if 0
    start += bytes([END, END])
    # iovec at 0: (ptr 16, len); message at 16; nwritten at 8
    start += bytes([I32_CONST]) + sleb(1) + bytes([I32_CONST]) + sleb(0)
    start += bytes([I32_CONST]) + sleb(1) + bytes([I32_CONST]) + sleb(8)
    start += bytes([0x10]) + uleb(0) + bytes([0x1A, END])  # call fd_write, drop
    start_locals = vec([uleb(1) + bytes([I32]), uleb(1) + bytes([I64])])
    start_body = start_locals + bytes(start)
    bodies = [body(i, units) for i in range(functions)]
    code = vec(bodies + [uleb(len(start_body)) + start_body])
    iovec = struct.pack("<II", 16, len(message))
    data = vec([
        uleb(0) + bytes([I32_CONST]) + sleb(0) + bytes([END]) + uleb(len(iovec)) + iovec,
        uleb(0) + bytes([I32_CONST]) + sleb(16) + bytes([END]) + uleb(len(message)) + message,
    ])
    return (
        b"\x00asm\x01\x00\x00\x00"
        + section(1, types)
        + section(2, imports)
        + section(3, funcs)
        + section(4, table)
        + section(5, memory)
        + section(7, exports)
        + section(9, elem)
        + section(10, code)
        + section(11, data)
    )


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: gen_large_module.py OUT.wasm [FUNCTIONS] [UNITS]")
    functions = int(sys.argv[2]) if len(sys.argv) > 2 else 12000
    units = int(sys.argv[3]) if len(sys.argv) > 3 else 40
    with open(sys.argv[1], "wb") as out:
        out.write(module(functions, units))


if __name__ == "__main__":
    main()

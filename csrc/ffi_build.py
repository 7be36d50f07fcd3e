"""Builds the one C extension, pygguf._native, from every csrc/**/*.c.

The cdefs are the plain-C headers in csrc/api/ (no macros, no #include), so adding a
kernel family means adding a .c file and, if Python must call it, an api/*.h header.
Each ISA translation unit selects its own instruction set with `#pragma GCC target`,
so nothing here is built with -march=native and the dispatcher picks at run time.
"""
import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
API_HEADERS = sorted(glob.glob(os.path.join(HERE, "api", "*.h")))
SOURCES = sorted(glob.glob(os.path.join(HERE, "**", "*.c"), recursive=True))
HEADERS = sorted(glob.glob(os.path.join(HERE, "**", "*.h"), recursive=True))

ffibuilder = FFI()
for header in API_HEADERS:
    with open(header, encoding="utf-8") as f:
        ffibuilder.cdef(f.read())

ffibuilder.set_source(
    "pygguf._native",
    "#include <stdint.h>\n#include <stddef.h>\n"
    + "".join(f'#include "api/{os.path.basename(h)}"\n' for h in API_HEADERS),
    sources=[os.path.relpath(s, os.path.dirname(HERE)) for s in SOURCES],
    depends=[os.path.relpath(h, os.path.dirname(HERE)) for h in HEADERS],
    include_dirs=[os.path.relpath(HERE, os.path.dirname(HERE))],
    extra_compile_args=["-O3", "-std=gnu11", "-Wall", "-Wno-unused-function", "-pthread", "-fno-math-errno", "-ffp-contract=off"],
    extra_link_args=["-pthread", "-lm"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

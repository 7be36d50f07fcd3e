"""Builds the one C extension, pygguf._native, from every csrc/**/*.c.

The cdefs are the headers of the product API, csrc/api/ (what pygguf calls), then those of the
test and benchmark entry points, csrc/testing/ (what tests/ and bench/ call, never pygguf). Both
sets go into this one extension: a second one would need its own copy of every kernel and of the
model it tests. A header's preprocessor lines (its include guard, its #includes) are left out of
the cdef, so C code includes these headers like any other. Each ISA translation unit selects its
own instruction set with `#pragma GCC target`, so nothing here is built with -march=native and the
dispatch table (csrc/kernels/dispatch.c) picks at run time.

PYGGUF_SANITIZE=address,undefined (any -fsanitize= list) builds it instrumented, for `make asan`
(.ci/asan), which puts that build in build/asan/ so the in-place one is never replaced: -O1, frame
pointers and line tables (-g1: full -g took 1.6x as long to compile) for readable stacks, and the
first UBSan report ends the run like an ASan one.
"""
import glob
import os

from cffi import FFI

HERE = os.path.dirname(os.path.abspath(__file__))
# the product API, each header after the ones whose types it uses
API_HEADERS = ["status.h", "isa.h", "pool.h", "kernels.h", "model.h", "sampling.h", "bpe.h", "gguf_strings.h", "machine.h", "grammar.h"]
HEADERS_CDEF = ([os.path.join(HERE, "api", h) for h in API_HEADERS]
                + sorted(glob.glob(os.path.join(HERE, "testing", "*.h"))))
SOURCES = sorted(glob.glob(os.path.join(HERE, "**", "*.c"), recursive=True))
HEADERS = sorted(glob.glob(os.path.join(HERE, "**", "*.h"), recursive=True))

missing = sorted(set(glob.glob(os.path.join(HERE, "api", "*.h"))) - set(HEADERS_CDEF))
if missing:
    raise RuntimeError(f"add {', '.join(os.path.basename(m) for m in missing)} to API_HEADERS in {__file__}")


def cdef_text(path: str) -> str:
    """The header's declarations, without its preprocessor lines."""
    with open(path, encoding="utf-8") as f:
        return "".join(line for line in f if not line.lstrip().startswith("#"))


COMPILE_ARGS = ["-O3", "-std=gnu11", "-Wall", "-Wno-unused-function", "-pthread", "-fno-math-errno", "-ffp-contract=off"]
LINK_ARGS = ["-pthread", "-lm"]
SANITIZE = os.environ.get("PYGGUF_SANITIZE", "").strip()
if SANITIZE:
    COMPILE_ARGS += [f"-fsanitize={SANITIZE}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g1", "-O1"]
    LINK_ARGS += [f"-fsanitize={SANITIZE}"]

ffibuilder = FFI()
for header in HEADERS_CDEF:
    ffibuilder.cdef(cdef_text(header))

ffibuilder.set_source(
    "pygguf._native",
    "#include <stdint.h>\n#include <stddef.h>\n"
    + "".join(f'#include "{os.path.relpath(h, HERE)}"\n' for h in HEADERS_CDEF),
    sources=[os.path.relpath(s, os.path.dirname(HERE)) for s in SOURCES],
    depends=[os.path.relpath(h, os.path.dirname(HERE)) for h in HEADERS],
    include_dirs=[os.path.relpath(HERE, os.path.dirname(HERE))],
    extra_compile_args=COMPILE_ARGS,
    extra_link_args=LINK_ARGS,
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

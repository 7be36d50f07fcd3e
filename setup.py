"""The one C extension (pygguf._native) is described in csrc/ffi_build.py; this file only says how
its objects are compiled.

Each object is kept in build/objects/ under a key made of its source, every header and the compile
command, and is compiled only when no object has that key. So the extension is compiled once per
change: `setup.py build_ext --inplace` and the editable build `pip install -e` does (in a temporary
directory) share the same objects, and editing one .c file recompiles that file alone. Sources are
compiled on every CPU at once, one line of progress each.
"""
import hashlib
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

from setuptools import setup
from setuptools.command.build_ext import build_ext

HERE = os.path.dirname(os.path.abspath(__file__))
OBJECTS = os.path.join(HERE, "build", "objects")
CSRC = os.path.join(HERE, "csrc") + os.sep


def _digest(paths) -> bytes:
    h = hashlib.sha256()
    for path in sorted(paths):
        with open(path, "rb") as f:
            h.update(path.encode() + b"\0" + f.read())
    return h.digest()


class CachedBuildExt(build_ext):
    """build_ext whose compile step reuses objects by content and runs the compiler in parallel."""

    def build_extension(self, ext):
        compiler = self.compiler
        compile_all = compiler.compile

        def compile_cached(sources, output_dir=None, macros=None, include_dirs=None, debug=0,
                           extra_preargs=None, extra_postargs=None, depends=None):
            command = repr((compiler.compiler_so, macros, include_dirs, debug, extra_preargs, extra_postargs))
            shared = hashlib.sha256(command.encode() + _digest(depends or [])).digest()
            todo = []

            def object_for(source):
                with open(source, "rb") as f:
                    key = hashlib.sha256(shared + f.read()).hexdigest()[:20]
                folder = os.path.join(OBJECTS, key)
                if not os.path.abspath(source).startswith(CSRC):   # cffi's generated wrapper: its
                    # folder differs between builds (a temporary one under pip), so it is kept by key
                    os.makedirs(folder, exist_ok=True)
                    source = os.path.relpath(shutil.copy(source, folder), HERE)
                obj = compiler.object_filenames([source], output_dir=folder)[0]
                if not os.path.exists(obj):
                    todo.append((source, folder))
                return obj

            objects = [object_for(s) for s in sources]

            def compile_one(job):
                n, (source, folder) = job
                print(f"pygguf: compiling [{n}/{len(todo)}] {source}", file=sys.stderr, flush=True)
                compile_all([source], output_dir=folder, macros=macros, include_dirs=include_dirs, debug=debug,
                            extra_preargs=extra_preargs, extra_postargs=extra_postargs, depends=depends)

            with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                list(pool.map(compile_one, enumerate(todo, 1)))
            if not todo:
                print(f"pygguf: {len(objects)} objects up to date, linking", file=sys.stderr, flush=True)
            return objects

        compiler.compile = compile_cached
        try:
            super().build_extension(ext)
        finally:
            compiler.compile = compile_all


setup(cffi_modules=["csrc/ffi_build.py:ffibuilder"], cmdclass={"build_ext": CachedBuildExt})

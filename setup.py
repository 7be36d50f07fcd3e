from setuptools import setup

# The one C extension (pygguf._native) is described in csrc/ffi_build.py.
setup(cffi_modules=["csrc/ffi_build.py:ffibuilder"])

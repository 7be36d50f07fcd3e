"""What the command takes from pygguf, in one object the tests can replace (Click's ctx.obj)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Runtime:
    load_model: Callable[..., object]           # Model.load(path, n_ctx=, n_threads=, n_batch=, rope_..., type_k=, type_v=, use_mmap=, use_mlock=)
    make_sampler: Callable[..., object]         # Sampler(params, n_vocab, eog_ids=, detokenize=, tokenize=, n_ctx_train=)
    sampler_params: Callable[..., object]       # SamplerParams(**given options)
    errors: tuple[type[BaseException], ...]     # failures reported as one line, not a traceback
    clock: Callable[[], float] = time.perf_counter

    @classmethod
    def default(cls) -> Runtime:
        # Imported here, not at module level, so `pygguf --help` and `--version` stay light.
        from pygguf.errors import PyggufError
        from pygguf.model import Model
        from pygguf.sampling import Sampler, SamplerParams
        return cls(
            load_model=Model.load,
            make_sampler=Sampler,
            sampler_params=SamplerParams,
            errors=(PyggufError, OSError),
        )

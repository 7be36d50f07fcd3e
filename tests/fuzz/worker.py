"""The fuzzer's worker process: reads one JSON request per line on stdin, runs the file through
pygguf, answers one JSON line on stdout. The parent (run.py) kills and restarts it when a case
passes its timeout; the address space is capped (RLIMIT_AS) so a huge allocation fails here
instead of taking the machine.

Per case: the GGUF reader (every value and tensor touched), Model.load with a small context, the
tokenizer, a prompt decode and `steps` more decode steps, each row of logits sampled. Outcomes:
"error" (a PyggufError: the one line the user would see), "ok" (every row of logits finite),
"nonfinite" (a run that went on with logits that are not finite: a failure), "traceback"
(anything else: a failure).
"""
from __future__ import annotations

import json
import os
import resource
import sys
import traceback


def cap_memory(megabytes: int) -> None:
    if megabytes > 0:
        limit = megabytes << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


_tokenizers: dict = {}     # the last tokenizer built, by its tokenizer.* metadata (most mutants keep the seed's)


def tokenizer_for(metadata: dict):
    """Tokenizer.from_metadata, reused while the tokenizer.* values are the same as last time's
    (building SmolLM2's takes longer than the two decode steps; it reads general.name too)."""
    from pygguf.tokenizer import Tokenizer

    keys = {k: v for k, v in metadata.items() if k.startswith(("tokenizer.", "general."))}
    cached = _tokenizers.get("last")
    if cached is not None and cached[0] == keys:
        return cached[1]
    tokenizer = Tokenizer.from_metadata(metadata)
    _tokenizers["last"] = (keys, tokenizer)
    return tokenizer


def run_case(path: str, steps: int) -> dict:
    import numpy as np

    from pygguf.errors import PyggufError
    from pygguf.gguf import GGUFReader
    from pygguf.model.batch import Batch
    from pygguf.model.model import Model
    from pygguf.sampling.params import SamplerParams
    from pygguf.sampling.sampler import Sampler, check_model_logits

    try:
        with GGUFReader(path) as reader:
            n_values = len(reader.metadata) + sum(int(t.nbytes > 0) for t in reader.tensors.values())
        with Model.load(path, n_ctx=32, n_threads=1, n_batch=8) as model:
            tokenizer = tokenizer_for(model.metadata)
            prompt = tokenizer.encode("Hi there")[:8] or [0]
            sampler = Sampler(SamplerParams(seed=7), model.config.n_vocab, eog_ids=tokenizer.eog_ids)
            rows = model.decode(Batch.of(prompt))
            for step in range(steps + 1):
                check_model_logits(rows[-1])               # what the engine does with each row of logits
                token = sampler.sample(rows[-1])
                if not np.isfinite(rows[-1]).all():
                    return {"outcome": "nonfinite", "detail": f"logits not finite at step {step}, sampler accepted"}
                sampler.accept(token)
                tokenizer.decode([token])
                if step < steps and len(prompt) + step < model.n_ctx:
                    rows = model.decode(Batch.of([token], pos0=len(prompt) + step))
        return {"outcome": "ok", "detail": f"{n_values} values"}
    except PyggufError as e:
        message = str(e)
        if "\n" in message or not message:
            return {"outcome": "traceback", "detail": f"{type(e).__name__} of {len(message.splitlines())} lines: "
                                                       f"{message[:300]!r}"}
        return {"outcome": "error", "detail": f"{type(e).__name__}: {message[:300]}"}
    except Exception:           # noqa: BLE001 -- the fuzzer's whole point: anything else is a finding
        return {"outcome": "traceback", "detail": traceback.format_exc(limit=12)[-3000:]}


def main() -> None:
    cap_memory(int(os.environ.get("PYGGUF_FUZZ_MEM_MB", "3072")))
    out = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr                 # pygguf's prints must not mix with the answers
    out.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        out.write(json.dumps(run_case(request["path"], request.get("steps", 2))) + "\n")


if __name__ == "__main__":
    main()

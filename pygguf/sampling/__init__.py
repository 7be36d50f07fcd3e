"""Sampling: llama.cpp's sampler chain. `SamplerParams` (params.py) holds every default once;
`Sampler` (sampler.py) owns the parameters, the accepted-token history and the RNG; the samplers
themselves are small pure functions over `Candidates` (filters.py, dry.py), and the common chains
run as one C call (fast.py) that computes the same thing."""
from pygguf.errors import SamplerError
from pygguf.sampling.params import (
                                    DEFAULT_SAMPLERS,
                                    SamplerParams,
                                    parse_logit_bias,
                                    parse_sampler_names,
                                    parse_samplers,
                                    parse_sampling_seq,
)
from pygguf.sampling.sampler import Sampler

__all__ = ["DEFAULT_SAMPLERS", "Sampler", "SamplerError", "SamplerParams", "parse_logit_bias",
           "parse_sampler_names", "parse_samplers", "parse_sampling_seq"]

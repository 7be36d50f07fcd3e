"""llama.cpp's samplers as small pure functions over a `Candidates` structure.

`pygguf.sampling` (SamplerParams, Sampler) builds the chain from these; the modules here hold
no configuration and no global state: the RNG and per-sampler history are passed in.
"""

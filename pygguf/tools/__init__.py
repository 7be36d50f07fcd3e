"""The tools built on the library: batch runs (and over Ray), perplexity, quantization."""

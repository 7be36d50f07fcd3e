"""GBNF grammars (issue #16): gbnf.py parses llama.cpp's grammar text into its rule encoding;
matcher.py says which tokens a grammar allows next (C, csrc/grammar/) and advances over them."""

"""pygguf command-line tools (installed as the pygguf_cli package)."""

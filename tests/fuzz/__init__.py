"""The GGUF fuzzer: structure-aware mutations of a real model file (mutations.py, over the layout
of layout.py), each run through the reader, Model.load, two decode steps and the sampler in a
worker process with a timeout and a memory cap (worker.py), some through pygguf-dump and the CLI
too; run.py drives a campaign and prints the outcome table. `make fuzz` runs a long campaign,
test_fuzz_smoke.py a short seeded one."""

"""A short seeded run of the GGUF fuzzer (run.py; `make fuzz` runs the long campaign): every
category of mutation of SmolLM2's file, through the reader, Model.load, two decode steps and the
sampler, a few through pygguf-dump and the CLI. Every case must end in a one-line PyggufError or
a normal run with finite logits: no traceback, no hang, no signal."""
from __future__ import annotations

import mmap

import pytest

from fuzz.layout import build, parse
from fuzz.mutations import CATEGORIES, mutant
from fuzz.run import campaign, default_model

SMOKE_SEED = 0
SMOKE_CASES = 6 * len(CATEGORIES)


def test_fuzz_smoke_run():
    model = default_model()
    if not model.exists():
        pytest.skip(f"no seed model at {model} (make model fetches it)")
    results = campaign(model, seed=SMOKE_SEED, cases=SMOKE_CASES, cli_every=SMOKE_CASES // 2, timeout=60)
    failures = "\n".join(f"{outcome}: {category} case {case}: {description}\n{detail}"
                         for category, case, description, outcome, detail in results.failures)
    assert not results.failures, results.render() + "\n" + failures
    total = sum(row["cases"] for row in results.table.values())
    assert total >= SMOKE_CASES
    assert sum(row["error"] for row in results.table.values()) > 0      # the mutations do bite


def test_the_layout_rebuilds_the_seed_file_exactly_and_mutants_are_reproducible():
    model = default_model()
    if not model.exists():
        pytest.skip(f"no seed model at {model} (make model fetches it)")
    with open(model, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        layout = parse(mapped)
        assert build(layout) == mapped[:layout.data_offset]
        data_size = len(mapped) - layout.data_offset
    for category in CATEGORIES:
        a, b = mutant(layout, category, 5, data_size), mutant(layout, category, 5, data_size)
        assert (a.header, a.data_patches, a.truncate_at, a.description) == \
               (b.header, b.data_patches, b.truncate_at, b.description)

"""Measurement: the bytes a mixture-of-experts decode step reads, against what it should read.

    .venv/bin/python bench/moe_bytes.py [--shape mixtral-mini] [--type Q4_0] [-n 16] [-t 2] [--no-dense]

Builds (once, in the pygguf cache) the synthetic Mixtral-style file (pygguf.tools.synthetic: 8
experts, 2 used per token; 1.4 GB at Q4_0) and loads it with repack=False: the forward then
multiplies the GGUF rows straight from Model.load's read-only file mapping, so the pages of that
mapping this process has mapped (/proc/self/smaps Rss) are the pages the forward has touched,
plus what the kernel maps around a touched page. Which pages are mapped (/proc/self/pagemap) says
which experts were read: an expert counts as read in a layer when more than half of its pages in
ffn_{gate,up,down}_exps are. The mapping's pages are handed back between steps (madvise
MADV_DONTNEED: they leave the process and stay in the page cache), so a decode step's pages are
measured alone.

Each figure is set against (a) all the weights and (b) what a step should read: every tensor but
the embedding table, one row of it, and n_used/n_expert of each expert tensor; and its pages are
split into those of the bytes that should be read (all of them must be mapped), the others in the
same 2 MiB blocks of the file (the kernel maps a page-cache folio whole, up to 2 MiB, and faults
around a touched page: on Linux 6.18/ext4 that is ~15% beside the experts' edges), and any
elsewhere (a read that should not happen: 0). Printed: after load, after the prompt (one batch),
after 1 decoded token and after N (the pages handed back after the prompt), N more steps each
alone, the experts each layer read; then decode tokens/s of the MoE file and of a dense llama with
the same attention and an FFN as wide as the used experts together (synthetic.dense_twin: the same
bytes per token), GGUF rows and repacked rows (Model.load's default), beside the machine's
streaming-read rate.

The tokens are teacher-forced from a fixed English passage (the random weights would repeat one
token). Linux only (/proc). Measurement, not a test; the machine should be idle for the tokens/s.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import sys
import time
from pathlib import Path

import numpy as np

from pygguf.model import Model
from pygguf.model.batch import Batch
from pygguf.tools import benchmark, synthetic
from pygguf.tools.quant_mix import file_type
from pygguf_cli.paths import cache_dir, vocab_dir

PAGE = os.sysconf("SC_PAGE_SIZE")
EXPERT_TENSORS = ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps")
PASSAGE = ("The committee met on a cold morning in early March to decide what the town would do about "
           "the old bridge over the river. Some wanted it repaired, others wanted a new one built a "
           "little further upstream, where the banks were higher and the water ran slower. The engineer "
           "explained that either plan would take two years and cost more than the town had saved, so "
           "the discussion turned to taxes, grants from the county, and a loan from the bank.")
MB = 1e6




class MappingPages:
    """The pages of a model's file mapping that this process has mapped, i.e. touched."""

    def __init__(self, model: Model):
        self.mapping = model._mapping                       # Model.load's read-only mmap of the file
        view = np.frombuffer(self.mapping, dtype=np.uint8)
        self.addr, self.size = view.ctypes.data, view.nbytes
        del view                                            # no export left: the mapping can close
        self.n_pages = -(-self.size // PAGE)

    def rss(self) -> int:
        """smaps Rss of the mapping, bytes"""
        start = f"{self.addr:x}-"
        with open("/proc/self/smaps") as f:
            inside = False
            for line in f:
                if line.startswith(start):
                    inside = True
                elif inside and line.startswith("Rss:"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError("the model's mapping is not in /proc/self/smaps")

    def present(self) -> np.ndarray:
        """(n_pages,) bool: the page is mapped in this process (pagemap bit 63)"""
        with open("/proc/self/pagemap", "rb") as f:
            f.seek(self.addr // PAGE * 8)
            raw = f.read(self.n_pages * 8)
        return (np.frombuffer(raw, dtype=np.uint64) >> np.uint64(63)).astype(bool)

    def drop(self) -> None:
        """Hand every page back (they stay in the page cache): the next reads map them again"""
        self.mapping.madvise(mmap.MADV_DONTNEED)


class Layout:
    """The file's tensors as byte ranges, and what a decode step should read."""

    def __init__(self, model: Model, n_pages: int):
        c = model.config
        self.n_layer, self.n_expert, self.n_used, self.n_pages = c.n_layer, c.n_expert, c.n_expert_used, n_pages
        self.tensors = model.tensors
        self.all_bytes = sum(t.nbytes for t in self.tensors.values())
        self.embd = self.tensors["token_embd.weight"]
        self.embd_row = self.embd.qtype.row_bytes(c.n_embd)
        self.expert_bytes = sum(t.nbytes for n, t in self.tensors.items() if self._is_expert(n))
        self.rest = self.all_bytes - self.expert_bytes - self.embd.nbytes     # read whole by every step
        self.step = self.rest + self.embd_row + (self.expert_bytes * self.n_used // self.n_expert
                                                 if self.n_expert else 0)

    @staticmethod
    def _is_expert(name: str) -> bool:
        return name.split(".")[-2] in EXPERT_TENSORS

    def _slab(self, layer: int, name: str, e: int) -> tuple[int, int]:
        t = self.tensors[f"blk.{layer}.{name}.weight"]
        slab = t.nbytes // self.n_expert
        return t.offset + e * slab, t.offset + (e + 1) * slab

    def experts_read(self, present: np.ndarray) -> list[list[int]]:
        """Per layer, the experts more than half of whose pages are mapped in all three expert tensors"""
        out = []
        for layer in range(self.n_layer):
            sets = []
            for name in EXPERT_TENSORS:
                spans = [self._slab(layer, name, e) for e in range(self.n_expert)]
                sets.append({e for e, (a, b) in enumerate(spans)
                             if present[a // PAGE:max(b // PAGE, a // PAGE + 1)].mean() > 0.5})
            if not sets[0] == sets[1] == sets[2]:
                print(f"  note: layer {layer}: gate/up/down read different experts {sets}")
            out.append(sorted(set.union(*sets)))
        return out

    def read_set(self, experts: list[list[int]] | None, tokens) -> tuple[int, np.ndarray]:
        """The bytes steps over these tokens choosing these experts (per layer) read, and their pages"""
        pages = np.zeros(self.n_pages, dtype=bool)
        total = 0

        def add(a: int, b: int) -> None:
            nonlocal total
            pages[a // PAGE:-(-b // PAGE)] = True
            total += b - a

        for name, t in self.tensors.items():
            if t is not self.embd and not self._is_expert(name):
                add(t.offset, t.offset + t.nbytes)
        for tok in sorted(set(tokens)):
            add(self.embd.offset + tok * self.embd_row, self.embd.offset + (tok + 1) * self.embd_row)
        for layer, chosen in enumerate(experts or []):
            for name in EXPERT_TENSORS:
                for e in chosen:
                    add(*self._slab(layer, name, e))
        return total, pages


FOLIO_PAGES = 2 * 1024 * 1024 // PAGE    # the largest page-cache folio (a PMD), aligned in the file


def account(present: np.ndarray, read: np.ndarray) -> dict:
    """Mapped pages against the pages read: inside the read set, outside it but in a 2 MiB block of
    the file that it also reads (the kernel maps a large folio of the page cache whole, and faults
    around a touched page), and outside any such block (reads the step should not make)."""
    blocks = -(-len(read) // FOLIO_PAGES)
    padded = np.zeros(blocks * FOLIO_PAGES, dtype=bool)
    padded[:len(read)] = read
    near = np.repeat(padded.reshape(blocks, FOLIO_PAGES).any(axis=1), FOLIO_PAGES)[:len(read)]
    outside = present & ~read
    return {"read_pages": int(read.sum()) * PAGE, "blocks": int(near.sum()) * PAGE,
            "inside": int((present & read).sum()) * PAGE,
            "folio": int((outside & near).sum()) * PAGE, "stray": int((outside & ~near).sum()) * PAGE}


def snapshot(pages: MappingPages, layout: Layout, tokens, experts: bool = True) -> dict:
    present = pages.present()
    chosen = layout.experts_read(present) if experts and layout.n_expert else None
    expected, read = layout.read_set(chosen, tokens)
    return {"rss": pages.rss(), "experts": chosen, "expected": expected, **account(present, read)}


def tokens_of(model: Model, n: int) -> list[int]:
    ids = model.tokenizer.encode(PASSAGE)
    return [ids[i % len(ids)] for i in range(n)]


def decode_rate(model: Model, tokens: list[int], pos: int, reps: int) -> float:
    """best tokens/s over reps runs of single-token decodes of `tokens` from position pos"""
    best = 0.0
    for _ in range(reps):
        t0 = time.perf_counter()
        for i, tok in enumerate(tokens):
            model.decode(Batch.of([tok], pos + i))
        best = max(best, len(tokens) / (time.perf_counter() - t0))
    return best


def experts_text(experts: list[list[int]]) -> str:
    return " ".join(f"L{i}:{''.join(map(str, e))}" for i, e in enumerate(experts))


def measure(path: Path, args) -> dict:
    """Resident bytes of the mapping after load, the prompt, 1 and N decoded tokens (emptied after
    the prompt), then N steps each alone; GGUF rows (repack=False)"""
    n, p = args.tokens, args.prompt
    with Model.load(path, n_ctx=args.ctx, n_threads=args.threads, repack=False) as model:
        pages = MappingPages(model)
        layout = Layout(model, pages.n_pages)
        toks = tokens_of(model, p + 2 * n)
        r = {"file": path.name, "all_bytes": layout.all_bytes, "expert_bytes": layout.expert_bytes,
             "rest_bytes": layout.rest, "embd_bytes": layout.embd.nbytes, "embd_row": layout.embd_row,
             "expected_step": layout.step, "n_expert": layout.n_expert, "n_used": layout.n_used,
             "load": snapshot(pages, layout, [], experts=False)}
        model.decode(Batch.of(toks[:p]))
        r["prompt"] = snapshot(pages, layout, toks[:p])
        pages.drop()
        r["rss_dropped"] = pages.rss()
        model.decode(Batch.of([toks[p]], p))
        r["one"] = snapshot(pages, layout, toks[p:p + 1])
        for i in range(p + 1, p + n):
            model.decode(Batch.of([toks[i]], i))
        r["n"] = snapshot(pages, layout, toks[p:p + n])
        r["steps"] = []
        for i in range(p + n, p + 2 * n):
            pages.drop()
            model.decode(Batch.of([toks[i]], i))
            r["steps"].append(snapshot(pages, layout, toks[i:i + 1]))
    return r


def line(label: str, snap: dict, ref: int) -> str:
    """Rss, against ref, and where its pages lie"""
    return (f"  {label:24} {snap['rss'] / MB:7.1f} MB = {snap['rss'] / ref:.3f} x (b)   should read "
            f"{snap['expected'] / MB:.1f}: {snap['inside'] / max(snap['read_pages'], 1):.1%} of those pages mapped; "
            f"+{snap['folio'] / MB:.1f} MB mapped in the same 2 MiB blocks (all of them: {snap['blocks'] / MB:.1f}), "
            f"{snap['stray'] / MB:.1f} MB elsewhere")


def report_moe(r: dict, s: synthetic.Shape, args) -> None:
    n, used, E, exp = args.tokens, r["n_used"], r["n_expert"], r["expected_step"]
    print(f"\n{r['file']}: {s.n_layer} layers, {E} experts, {used} used per token")
    print(f"  (a) all weights             {r['all_bytes'] / MB:7.1f} MB = experts {r['expert_bytes'] / MB:.1f} + "
          f"embedding table {r['embd_bytes'] / MB:.1f} + the rest {r['rest_bytes'] / MB:.1f}")
    print(f"  (b) a decode step should read {exp / MB:7.1f} MB = the rest {r['rest_bytes'] / MB:.1f} + one embedding "
          f"row ({r['embd_row']} B) + {used}/{E} of the experts {r['expert_bytes'] * used / E / MB:.1f}"
          f"   [{exp / r['all_bytes']:.1%} of (a)]")
    print("resident bytes of the file mapping (smaps Rss; repack=False: the GGUF rows are read from the mapping):")
    print(f"  after load                 {r['load']['rss'] / MB:7.1f} MB")
    print(line(f"after the prompt ({args.prompt} tok)", r["prompt"], exp))
    print(f"    experts read: {experts_text(r['prompt']['experts'])}   (then the pages handed back: Rss "
          f"{r['rss_dropped'] / MB:.1f} MB)")
    print(line("after 1 decoded token", r["one"], exp))
    print(f"    experts read: {experts_text(r['one']['experts'])}")
    print(line(f"after {n} decoded tokens", r["n"], exp))
    print(f"    experts read: {experts_text(r['n']['experts'])}   [{r['n']['rss'] / r['all_bytes']:.1%} of (a)]")
    steps = r["steps"]
    rss = np.array([st["rss"] for st in steps])
    counts = sorted({len(e) for st in steps for e in st["experts"]})
    inside = min(st["inside"] / st["read_pages"] for st in steps)
    folio = np.array([st["folio"] for st in steps])
    stray = max(st["stray"] for st in steps)
    distinct = [len({tuple(st["experts"][layer]) for st in steps}) for layer in range(s.n_layer)]
    print(f"each of {n} more steps alone (pages handed back before each):")
    print(f"  Rss min/mean/max {rss.min() / MB:.1f} / {rss.mean() / MB:.1f} / {rss.max() / MB:.1f} MB = "
          f"{rss.min() / exp:.3f} / {rss.mean() / exp:.3f} / {rss.max() / exp:.3f} x (b); experts read per layer: "
          f"{counts}; pages of the read set mapped: >= {inside:.1%}; mapped beside them in the same 2 MiB blocks "
          f"{folio.mean() / MB:.1f} MB mean; elsewhere <= {stray / MB:.1f} MB")
    print(f"  distinct expert pairs per layer over the {n} steps: {distinct}")


def measure_dense(path: Path, args) -> dict:
    """One decode step alone of a dense file (every matrix read)"""
    with Model.load(path, n_ctx=args.ctx, n_threads=args.threads, repack=False) as model:
        pages = MappingPages(model)
        layout = Layout(model, pages.n_pages)
        toks = tokens_of(model, args.prompt + 1)
        model.decode(Batch.of(toks[:args.prompt]))
        pages.drop()
        model.decode(Batch.of([toks[args.prompt]], args.prompt))
        return {"file": path.name, "all_bytes": layout.all_bytes, "expected_step": layout.step,
                "step": snapshot(pages, layout, toks[args.prompt:args.prompt + 1], experts=False)}


def rates(runs: list[tuple[str, Path, bool]], args) -> dict[str, float]:
    """Decode tokens/s of each (label, file, repack): all loaded at once, warmed, then timed in
    turn, round after round (a load from other jobs then weighs on every one alike); the best round"""
    from contextlib import ExitStack

    best: dict[str, float] = {}
    with ExitStack() as stack:
        models = []
        for label, path, repack in runs:
            model = stack.enter_context(Model.load(path, n_ctx=args.ctx, n_threads=args.threads, repack=repack))
            toks = tokens_of(model, args.prompt + 2 + args.tg)
            model.decode(Batch.of(toks[:args.prompt]))
            for i in range(args.prompt, args.prompt + 2):   # warm: every page this path reads mapped
                model.decode(Batch.of([toks[i]], i))
            models.append((label, model, toks[args.prompt + 2:]))
        for _ in range(args.reps):
            for label, model, toks in models:
                best[label] = max(best.get(label, 0.0), decode_rate(model, toks, args.prompt + 2, 1))
    return best


def build(s: synthetic.Shape, ft, log) -> Path:
    path = cache_dir() / "synthetic" / synthetic.file_name(s, ft)
    if not path.exists():
        vocab = vocab_dir() / synthetic.VOCAB_FILE
        if not vocab.exists():
            sys.exit(f"{vocab} is missing: `make vocab` fetches llama.cpp's vocabularies")
        t0 = time.perf_counter()
        synthetic.build(s, ft, path, vocab)
        log(f"built {path} ({path.stat().st_size / MB:.0f} MB) in {time.perf_counter() - t0:.0f} s")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", default="mixtral-mini", help="a synthetic MoE shape (default mixtral-mini)")
    ap.add_argument("--type", default="Q4_0", help="file type, as llama-quantize names it (default Q4_0)")
    ap.add_argument("-n", "--tokens", type=int, default=16, help="decode steps measured (default 16)")
    ap.add_argument("--prompt", type=int, default=5, help="prompt tokens, one batch (default 5)")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--tg", type=int, default=32, help="tokens timed for tokens/s (default 32)")
    ap.add_argument("--reps", type=int, default=5, help="best of this many timed rounds (default 5)")
    ap.add_argument("--no-dense", action="store_true", help="skip the dense file of the same bytes per token")
    ap.add_argument("--no-rate", action="store_true", help="skip tokens/s")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    args.ctx = args.prompt + max(2 * args.tokens, 2 + args.tg) + 8

    if not Path("/proc/self/pagemap").exists():
        print("moe_bytes: skipped (reads /proc/self/smaps and /proc/self/pagemap: Linux only)")
        return 0
    s, ft = synthetic.shape(args.shape), file_type(args.type)
    if not s.n_expert:
        sys.exit(f"{s.name} is not a mixture-of-experts shape")
    print(f"{benchmark.cpu_name()}, {os.cpu_count()} CPUs, loadavg {os.getloadavg()[0]:.2f}, -t {args.threads}; "
          f"MB = 1e6 bytes, page {PAGE} bytes", flush=True)
    moe_path = build(s, ft, print)
    dense_path = None if args.no_dense else build(synthetic.dense_twin(s), ft, print)

    r = measure(moe_path, args)
    report_moe(r, s, args)
    exp = r["expected_step"]
    if dense_path is not None:
        d = measure_dense(dense_path, args)
        print(f"\n{d['file']} (dense twin: FFN {s.n_ff * s.n_expert_used} wide): weights {d['all_bytes'] / MB:.1f} MB")
        print(line("one decode step alone", d["step"], d["expected_step"]))
        r["dense"] = d
    if not args.no_rate:
        print(f"\ndecode tokens/s (-t {args.threads}, best of {args.reps} rounds of {args.tg} tokens, the files "
              f"taking turns; loadavg {os.getloadavg()[0]:.2f}; streaming read of 1 GiB "
              f"{benchmark.stream_read_gbps(args.threads):.1f} GB/s):", flush=True)
        runs = [(f"MoE {'repacked' if rp else 'GGUF rows'}", moe_path, rp) for rp in (False, True)]
        runs += [(f"dense {'repacked' if rp else 'GGUF rows'}", dense_path, rp) for rp in (False, True)
                 if dense_path is not None]
        r["rates"] = rates(runs, args)
        for label, tps in r["rates"].items():
            step = r["dense"]["expected_step"] if label.startswith("dense") else exp
            print(f"  {label:18} {tps:6.1f} tok/s   ({step / MB:.0f} MB per token: {tps * step / 1e9:.1f} GB/s)")
        print(f"  (loadavg after: {os.getloadavg()[0]:.2f})")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

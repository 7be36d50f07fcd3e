"""Run a GGUF fuzzing campaign and print its outcome table.

    python -m tests.fuzz.run --seed 1 --cases 5000            # from the repository root
    python tests/fuzz/run.py --seed 0 --cases 150 --model FILE

Mutants are made from the model file (by default SmolLM2-135M-Instruct.Q4_1.gguf in pygguf's
cache), round-robin over the categories of mutations.py, written to a scratch directory and run by
one worker process (worker.py) with a per-case timeout and a memory cap; every `--cli-every`-th
case also goes through `pygguf-dump` and `pygguf -n 2` in subprocesses. A case passes when it ends
in a one-line PyggufError (the CLIs: exit 1, no traceback) or a normal run with finite logits.
Exit status 1 when any case failed (traceback, hang, signal, non-finite logits accepted).
Nothing here depends on how the extension was built: under ASan (LD_PRELOAD or ASAN_OPTIONS set)
the memory cap is left off, since ASan reserves terabytes of address space.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import resource
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):              # run as a script: make `fuzz` importable as a package
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fuzz.layout import parse
    from fuzz.mutations import CATEGORIES, Mutant, mutant
else:
    from .layout import parse
    from .mutations import CATEGORIES, Mutant, mutant

REPO = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().with_name("worker.py")
OUTCOMES = ("cases", "error", "ok", "traceback", "hang", "signal", "nonfinite")
FAILURES = ("traceback", "hang", "signal", "nonfinite")


def default_model() -> Path:
    cache = os.environ.get("PYGGUF_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pygguf")
    return Path(cache) / "models" / "SmolLM2-135M-Instruct.Q4_1.gguf"


def under_sanitizer() -> bool:
    return "asan" in os.environ.get("LD_PRELOAD", "") or "ASAN_OPTIONS" in os.environ


def child_env() -> dict:
    """The runner's environment, with this checkout's pygguf (and cli/ as pygguf_cli, if a shim
    dir on PYTHONPATH provides it) first, whatever is installed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))])
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    return env


@dataclass
class Results:
    table: dict = field(default_factory=lambda: defaultdict(Counter))
    failures: list = field(default_factory=list)     # (category, case, description, outcome, detail)

    def add(self, category: str, case: int, description: str, outcome: str, detail: str) -> None:
        row = self.table[category]
        row["cases"] += 1
        row[outcome] += 1
        if outcome in FAILURES:
            self.failures.append((category, case, description, outcome, detail))

    def render(self) -> str:
        names = list(self.table)
        width = max([len(n) for n in names] + [8])
        lines = [f"{'category':<{width}} " + " ".join(f"{o:>9}" for o in OUTCOMES)]
        total = Counter()
        for name in names:
            total.update(self.table[name])
            lines.append(f"{name:<{width}} " + " ".join(f"{self.table[name][o]:>9}" for o in OUTCOMES))
        lines.append(f"{'total':<{width}} " + " ".join(f"{total[o]:>9}" for o in OUTCOMES))
        return "\n".join(lines)

    @property
    def n_failures(self) -> int:
        return len(self.failures)


class Worker:
    """worker.py in a subprocess: one request at a time, killed and restarted on a hang."""

    def __init__(self, mem_mb: int):
        self.mem_mb = mem_mb
        self.proc = None

    def start(self) -> None:
        env = child_env()
        env["PYGGUF_FUZZ_MEM_MB"] = str(self.mem_mb)
        self.proc = subprocess.Popen([sys.executable, str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env=env, text=True, bufsize=1)
        ready = self._answer(120)
        if not ready or not ready.get("ready"):
            raise RuntimeError("the fuzz worker did not start (is pygguf importable?)")

    def _answer(self, timeout: float):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.proc.stdout.readline()
        return json.loads(line) if line else {"eof": True}

    def run(self, path: str, steps: int, timeout: float) -> tuple[str, str]:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self.proc.stdin.write(json.dumps({"path": path, "steps": steps}) + "\n")
        self.proc.stdin.flush()
        answer = self._answer(timeout)
        if answer is None:
            self.stop()
            return "hang", f"no answer within {timeout:g} s"
        if answer.get("eof"):
            rc = self.proc.wait()
            self.proc = None
            return ("signal" if rc < 0 else "traceback"), f"worker died with status {rc}"
        return answer["outcome"], answer["detail"]

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def write_mutant(m: Mutant, source_fd: int, data_offset: int, data_size: int, path: str) -> None:
    """The mutant's header, the seed file's data region after it, then the patches and the cut."""
    header = bytearray(m.header)
    for offset, patch in m.header_patches:
        header[offset:offset + len(patch)] = patch
    with open(path, "wb") as f:
        f.write(header)
        f.flush()
        sent, offset = 0, data_offset
        while sent < data_size:
            n = os.sendfile(f.fileno(), source_fd, offset + sent, data_size - sent)
            if n == 0:
                break
            sent += n
        for offset, patch in m.data_patches:
            os.pwrite(f.fileno(), patch, len(header) + offset)
        if m.truncate_at is not None:
            f.truncate(m.truncate_at)


def cli_outcome(argv: list, timeout: float, mem_mb: int) -> tuple[str, str]:
    """A CLI run's outcome: exit 0, or exit 1 with no traceback on stderr."""
    def limit():
        if mem_mb > 0:
            resource.setrlimit(resource.RLIMIT_AS, (mem_mb << 20, mem_mb << 20))
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=child_env(),
                           preexec_fn=limit)
    except subprocess.TimeoutExpired:
        return "hang", f"no exit within {timeout:g} s"
    err = p.stderr.decode("utf-8", "replace")
    if p.returncode < 0:
        return "signal", f"signal {-p.returncode}: {err[-500:]}"
    if "Traceback (most recent call last)" in err:
        return "traceback", err[-3000:]
    if p.returncode == 0:
        return "ok", ""
    last = err.strip().splitlines()[-1] if err.strip() else ""
    return ("error", last[:300]) if last else ("traceback", f"exit {p.returncode} with nothing on stderr")


def cli_commands(path: str) -> dict:
    dump = "import sys; sys.argv[0] = 'pygguf-dump'; from pygguf_cli.dump import main; main()"
    run = "import sys; sys.argv[0] = 'pygguf'; from pygguf_cli.main import main; main()"
    return {"pygguf-dump": [sys.executable, "-c", dump, path],
            "pygguf -n 2": [sys.executable, "-c", run, "-m", path, "-p", "hi", "-n", "2", "-c", "32", "-t", "1",
                            "-s", "1"]}


def have_cli() -> bool:
    probe = subprocess.run([sys.executable, "-c", "import pygguf_cli.dump, pygguf_cli.main"], env=child_env(),
                           capture_output=True)
    return probe.returncode == 0


def campaign(model: Path, *, seed: int, cases: int, start: int = 0, categories=None, timeout: float = 30.0, steps: int = 2,
             cli_every: int = 50, mem_mb: int | None = None, workdir: str | None = None, keep: str | None = None,
             progress=None) -> Results:
    categories = list(categories or CATEGORIES)
    if mem_mb is None:
        mem_mb = 0 if under_sanitizer() else 3072
    results = Results()
    source_fd = os.open(model, os.O_RDONLY)
    size = os.fstat(source_fd).st_size
    with mmap.mmap(source_fd, 0, access=mmap.ACCESS_READ) as mapped:
        layout = parse(mapped)
    data_size = size - layout.data_offset
    scratch = tempfile.mkdtemp(prefix="pygguf-fuzz-", dir=workdir or ("/dev/shm" if os.path.isdir("/dev/shm") else None))
    path = os.path.join(scratch, "mutant.gguf")
    worker = Worker(mem_mb)
    use_cli = cli_every > 0 and have_cli()
    try:
        for case in range(start, start + cases):
            category = categories[case % len(categories)]
            m = mutant(layout, category, seed * 1_000_003 + case, data_size)
            write_mutant(m, source_fd, layout.data_offset, data_size, path)
            outcome, detail = worker.run(path, steps, timeout)
            results.add(category, case, m.description, outcome, detail)
            if use_cli and case % cli_every == 0:
                for name, argv in cli_commands(path).items():
                    o, d = cli_outcome(argv, timeout, mem_mb)
                    results.add(name, case, f"{category}: {m.description}", o, d)
            if progress:
                progress(case, category, m.description, outcome, detail)
            if keep and results.failures and results.failures[-1][1] == case:
                os.makedirs(keep, exist_ok=True)
                shutil.move(path, os.path.join(keep, f"{category}-{seed}-{case}.gguf"))
    finally:
        worker.stop()
        os.close(source_fd)
        if os.path.exists(path):
            os.remove(path)
        os.rmdir(scratch)
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=200)
    parser.add_argument("--start", type=int, default=0, help="the first case's number (to replay one: --cases 1)")
    parser.add_argument("--model", type=Path, default=None, help="the seed GGUF file (default: SmolLM2 Q4_1)")
    parser.add_argument("--category", action="append", choices=list(CATEGORIES), help="only these (repeatable)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per case before it counts as a hang")
    parser.add_argument("--steps", type=int, default=2, help="decode steps after the prompt")
    parser.add_argument("--cli-every", type=int, default=50, help="every Nth case also through the CLIs (0: never)")
    parser.add_argument("--mem-mb", type=int, default=None, help="address-space cap per case (0: none)")
    parser.add_argument("--keep", help="save failing mutants in this directory")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per case")
    parser.add_argument("--table-json", help="also write the outcome table to this file (JSON)")
    args = parser.parse_args(argv)
    model = args.model or default_model()
    if not model.exists():
        print(f"fuzz: no seed model at {model} (make model fetches it)", file=sys.stderr)
        return 2
    start = time.monotonic()

    def progress(case, category, description, outcome, detail):
        if args.verbose or outcome in FAILURES:
            print(f"[{case}] {category}: {description} -> {outcome} {detail.splitlines()[-1] if detail else ''}",
                  flush=True)
        elif case % 100 == 99:
            print(f"... {case + 1} cases, {time.monotonic() - start:.0f} s", flush=True)

    results = campaign(model, seed=args.seed, cases=args.cases, start=args.start, categories=args.category, timeout=args.timeout,
                       steps=args.steps, cli_every=args.cli_every, mem_mb=args.mem_mb, keep=args.keep,
                       progress=progress)
    print(results.render())
    if args.table_json:
        with open(args.table_json, "w") as f:
            json.dump({name: dict(row) for name, row in results.table.items()}, f, indent=1)
    print(f"{args.cases} mutants of {model.name}, seed {args.seed}, {time.monotonic() - start:.0f} s")
    for category, case, description, outcome, detail in results.failures[:20]:
        print(f"\n--- {outcome}: {category} case {case}: {description}\n{detail}")
    return 1 if results.n_failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Facts about the machine the command reports and sizes itself by: CPUs, cores, the ISA in use."""
from __future__ import annotations

import os
from pathlib import Path


def usable_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:                      # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int], sysfs: Path = Path("/sys/devices/system/cpu")) -> int:
    """Distinct cores among the usable CPUs (SMT siblings count once): llama.cpp's default -t."""
    cores = set()
    for cpu in cpus:
        try:
            cores.add((sysfs / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text().strip())
        except OSError:
            return len(cpus)                    # no topology to read: every CPU counts
    return max(1, len(cores))


def resolve_threads(requested: int, n_cpus: int, n_default: int | None = None) -> tuple[int, str | None]:
    """Threads to run with, and a warning when the request was lowered.

    Not given (or <= 0): one per physical core. llama.cpp runs whatever -t says; our pool's
    barriers spin, so more threads than CPUs would make every step wait on descheduled threads.
    We cap at the CPU count and say so.
    """
    if requested <= 0:
        return (n_default or n_cpus), None
    if requested > n_cpus:
        return n_cpus, f"-t {requested} is more than the {n_cpus} CPUs available; using {n_cpus} threads"
    return requested, None


def system_info(n_threads: int, n_threads_batch: int, n_cpus: int) -> str:
    from pygguf.model import kernels
    features = " | ".join(f"{isa.upper()} = {int(kernels.isa_supported(isa))}" for isa in ("avx2", "avx512", "neon"))
    features += f" | AMX_INT8 = {int(kernels.amx_available())}"
    return (f"system_info: n_threads = {n_threads} (n_threads_batch = {n_threads_batch}) / {n_cpus} | "
            f"CPU : {features} | ISA = {kernels.active_isa()} |")

"""`threads=N`: how many threads the process computes with, in every pool it has, not only PyTorch's.

torch.set_num_threads sizes PyTorch's intra-op pool only. NumPy's BLAS (OpenBLAS) and OpenMP pools, which
scikit-learn's mixture fits and SciPy's linear algebra run on, keep one thread per core. On a machine
whose other cores are busy (two runs side by side on two cores) those extra threads spin and wait: a
128-d, 10-component mixture fit on 9,000 codes took 49 CPU-s with OpenBLAS's 2 threads against 15 with
one, and under a CPU-second budget (callbacks.cpu_budget) that was training time lost."""

from __future__ import annotations


def set_threads(threads: int | None) -> None:
    """Size PyTorch's pool and the native BLAS / OpenMP pools to `threads` (None or 0: leave them)."""
    if not threads:
        return
    import torch
    from threadpoolctl import threadpool_limits

    n = int(threads)
    torch.set_num_threads(n)
    threadpool_limits(limits=n)  # called, not entered: the limit stays for the rest of the process

"""The thread policy of env workers and of the process that runs the policy."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

# The thread policy. A worker uses one core: BLAS (OpenBLAS, MKL, OpenMP) and Mesa's llvmpipe would
# otherwise start a thread per core in every worker, and the workers would fight over the cores
# instead of using one each. The main process runs the policy with torch on the cores the workers
# leave (at least one): more threads than that spin-wait on cores the workers need (measured on 2
# cores with 2 workers: 1 torch thread instead of 2 halves the main process's CPU per env step).
WORKER_THREADS = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
                  "LP_NUM_THREADS": "1"}


def main_threads(workers: int) -> int:
    """Torch threads for the main process while ``workers`` env workers run."""
    return max(1, (os.cpu_count() or 1) - workers)


@contextlib.contextmanager
def policy_threads(workers: int) -> Iterator[None]:
    """Torch's intra-op threads set to :func:`main_threads` for the duration (only if torch is in use:
    a policy without torch does not import it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(main_threads(workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)

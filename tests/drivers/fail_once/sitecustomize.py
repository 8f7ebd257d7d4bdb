"""Fault injection for tests/test_slurm.py, kept out of the production code.

With this folder on PYTHONPATH and OVERTRAINED_FAIL_ONCE="<part of a log path>:<marker
file>", every Python process of the run wraps `overtrained.core.entry.log_to`: the first job whose
log path contains that part fails after opening its log (and creates the marker), so the
retry Snakemake and Slurm make can be observed. Without the variable it does nothing.
"""

import os

SPEC = os.environ.get("OVERTRAINED_FAIL_ONCE", "")

if SPEC:
    import sys
    from pathlib import Path

    from overtrained.core import entry

    _log_to = entry.log_to

    def log_to(path, append: bool = False) -> None:
        _log_to(path, append)
        part, _, marker = SPEC.partition(":")
        if part and part in str(path) and marker and not Path(marker).exists():
            Path(marker).write_text(str(path))
            print(f"OVERTRAINED_FAIL_ONCE: failing this attempt on purpose ({part!r})")
            sys.stdout.flush()
            sys.exit(1)

    entry.log_to = log_to

"""Rule `figures`: one PNG (and its plotted data as JSON) per measured effect."""

from pathlib import Path

from overtrained import figures
from overtrained.entry import log_to

log_to(snakemake.log[0])  # noqa: F821 (injected by Snakemake)
smk = snakemake  # noqa: F821
figures.make_all(smk.input.metrics, Path(smk.output.figures[0]).parent)

"""Rule `figures`: every figure as PNG and SVG (and its plotted data as JSON), and the
report's HTML pages (the overtraining verdicts, the tuned LRs, the run's provenance)."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from pathlib import Path

from overtrained.analysis import figures, report_pages
from overtrained.core.entry import log_to

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
inputs = (smk.input.metrics, smk.input.best_lr, smk.input.overtraining)
figures.make_all(*inputs, Path(smk.output.png[0]).parent)
report_pages.write_pages(*inputs, Path(smk.output.pages[0]).parent, config=smk.config)

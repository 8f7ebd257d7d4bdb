"""Rule `claims`: the paper's claims (a)-(e) read off this run's tables."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

from overtrained.analysis import claims
from overtrained.core.entry import log_to

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
table = claims.write(
    smk.input.metrics, smk.input.overtraining, {"families": smk.params.families}, smk.output
)
print(claims.overview(table).to_string(index=False))

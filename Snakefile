"""overtrained: does more pre-training make a model harder to fine-tune?

    snakemake                            # the embedded miniature, on this machine
    snakemake --profile profiles/slurm   # on a Slurm cluster
    snakemake -n                         # what would run, and why

The Snakefile is a table of contents; the logic lives in the `overtrained` package.
"""

import sys

from snakemake.utils import min_version

min_version("9.0")

sys.path.insert(0, workflow.basedir)

import overtrained.analysis.partial
import overtrained.core.config
import overtrained.execution.cpu_kernels
import overtrained.execution.job_server
import overtrained.evaluation.lm_eval_index
import overtrained.execution.slurm_profile
import overtrained.workflow as W

# Rule scripts import the library from this checkout, whatever environment runs them.
W.export_library_path(workflow.basedir)


# The embedded default, unless `--configfile` names another config: that one then replaces
# it (Snakemake would otherwise merge the two, mixing families, tasks and LR grids).
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


try:
    # The checks `overtrained validate` makes too; hub families get their commit shas.
    config = W.plan_config(config, report=lambda line: print(line, file=sys.stderr))
    # Every job (local, job server, Slurm) inherits the kernel pins: one machine's digits.
    overtrained.execution.cpu_kernels.pin(config["execution"]["cpu_kernels"])
    # Under --executor slurm: the profile's and the rules' resources, before any submission.
    overtrained.execution.slurm_profile.check_workflow(workflow, config)
except overtrained.core.config.ConfigError as error:
    sys.exit(f"Config error: {error}")


report: "report/workflow.rst"


onstart:
    # Local rules on a cluster's login node run as plain processes (no job server there).
    overtrained.execution.job_server.local_jobs_of(
        getattr(workflow.executor_plugin, "name", None)
    )
    # The Slurm checks again, now that Snakemake has set the executor (its supported API).
    try:
        overtrained.execution.slurm_profile.check_workflow(workflow, config)
    except overtrained.core.config.ConfigError as error:
        sys.exit(f"Config error: {error}")


onerror:
    # What the results that exist say, and which are missing and why: results/partial/.
    overtrained.analysis.partial.on_error(config)


wildcard_constraints:
    **W.wildcard_constraints(config),


include: "rules/common.smk"
include: "rules/pretrain.smk"
include: "rules/hub.smk"
include: "rules/finetune.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/theory.smk"


rule all:
    default_target: True
    input:
        rules.aggregate.output,
        rules.figures.output,
        rules.claims.output,
        W.theory_files(config),


rule prefetch:
    """Everything that needs internet, for clusters whose compute nodes have none."""
    input:
        W.prefetch_files(config),
    localrule: True

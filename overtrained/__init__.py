"""overtrained: does more pre-training make a model harder to fine-tune?

The library behind the Snakemake workflow in this repository. Modules are
imported lazily by the rule entry points so that light stages (probes,
aggregation) do not pay for torch/transformers/trl imports they do not use.
"""

__version__ = "0.1.0"

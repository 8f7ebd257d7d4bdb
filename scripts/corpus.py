"""Rule `corpus`: tokenizer + pre-training and held-out token streams of one family."""

from overtrained.execution.job_server import hand_over

# Runs this job in a warm worker of the local job server where one is wanted (see there).
hand_over(snakemake, __file__)  # (injected by Snakemake)

import time
from pathlib import Path

import numpy as np

from overtrained.core import provenance
from overtrained.core.entry import log_to, params_dict
from overtrained.core.units import parse_tokens
from overtrained.data import corpus
from overtrained.workflow import corpus_spec_fields

log_to(snakemake.log[0])  # (injected by Snakemake)
smk = snakemake
started, t0 = provenance.now(), time.perf_counter()
cfg = dict(smk.params.corpus)
spec = corpus.CorpusSpec.from_dict(corpus_spec_fields(cfg))
tokenizer_dir = Path(smk.output.tokenizer).parent
corpus.train_tokenizer(spec, smk.params.vocab_size, tokenizer_dir, cfg["tokenizer_documents"])
train = corpus.write_token_stream(
    spec, tokenizer_dir, "train", smk.params.train_tokens, smk.output.train, threads=smk.threads
)
heldout = corpus.write_token_stream(
    spec, tokenizer_dir, "heldout", parse_tokens(cfg["heldout_tokens"]), smk.output.heldout
)
provenance.write_json(
    smk.output.meta,
    provenance.record(
        "corpus",
        params_dict(smk.params),
        started,
        time.perf_counter() - t0,
        fingerprint=corpus.corpus_fingerprint(spec),
        train=train,
        heldout=heldout,
        heldout_unigram_entropy=corpus.unigram_entropy(
            np.load(smk.output.heldout), smk.params.vocab_size
        ),
        tokenizer_sha=provenance.sha256_file(smk.output.tokenizer),
    ),
)

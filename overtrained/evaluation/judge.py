"""Hook for a judge-based instruction-following score (AlpacaEval style); off by default.

A fine-tuned model answers its task's held-out prompts (greedy decoding); the configured
shell command reads the answers and writes a score. The judge itself (an API model, a
local reward model, AlpacaEval's CLI) is the user's: this module only generates, runs the
command and records its score with the provenance of the answers it scored.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import time
from pathlib import Path

from overtrained.core import provenance
from overtrained.core.jsonio import read_jsonl
from overtrained.models.loading import load_causal_lm, load_tokenizer, verified_weights


def generate(
    model_dir: str | Path, prompts: list[str], max_new_tokens: int, loading: dict | None = None
) -> list[str]:
    """Greedy continuations of each prompt (stopping at EOS), decoded without the prompt.
    `loading`: the family's loading options (workflow.loading_options)."""
    import torch

    loading = loading or {}
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_causal_lm(model_dir, device, **loading).eval()
    tokenizer = load_tokenizer(model_dir, loading.get("trust_remote_code", False))
    room = model.config.max_position_embeddings
    responses = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
        ids = ids[:, -max(1, room - max_new_tokens) :].to(device)
        new = min(max_new_tokens, room - ids.shape[1])
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        responses.append(tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True))
    return responses


def run(
    model_dir: str | Path,
    test_jsonl: str | Path,
    task: str,
    judge: dict,
    out_json: str | Path,
    params: dict,
    status: str = "ok",
    loading: dict | None = None,
) -> dict:
    """Answer the held-out prompts, run the judge command, write eval/judge.json."""
    started, t0 = provenance.now(), time.perf_counter()
    digest = verified_weights(model_dir)  # before any work: a changed file stops here
    rows = read_jsonl(test_jsonl)[: judge["limit"]]
    prompts = [r["prompt"] for r in rows]
    responses = generate(model_dir, prompts, judge["max_new_tokens"], loading)
    out_json = Path(out_json)
    answers = out_json.with_name("judge_responses.jsonl")
    answers.write_text(
        "".join(
            json.dumps({"prompt": r["prompt"], "reference": r["completion"], "response": a}) + "\n"
            for r, a in zip(rows, responses, strict=True)
        )
    )
    scored = out_json.with_name("judge_output.json")
    scored.unlink(missing_ok=True)  # a command that writes nothing must not reuse a stale score
    # Plain substitution, not str.format: commands may hold braces of their own (JSON).
    command = (
        judge["command"]
        .replace("{responses}", shlex.quote(str(answers)))
        .replace("{output}", shlex.quote(str(scored)))
    )
    subprocess.run(command, shell=True, check=True)
    verdict = json.loads(scored.read_text())
    if not isinstance(verdict.get("score"), (int, float)):
        raise ValueError(f"the judge command wrote no numeric 'score' to {scored}: {verdict}")
    record = provenance.record(
        "judge",
        params,
        started,
        time.perf_counter() - t0,
        status=status,
        metrics=[
            {
                "metric": "judge_score",
                "task": task,
                "value": float(verdict["score"]),
                "n": len(rows),
            }
        ],
        judge_output=verdict,
        responses_sha256=provenance.sha256_file(answers),
        model_sha=digest,
    )
    record = provenance.write_json(out_json, record)  # as written: scrubbed, hashed
    return record

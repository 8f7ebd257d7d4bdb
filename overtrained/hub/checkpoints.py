"""Intermediate checkpoints of Hub repositories: branch names parsed into token counts.

Branch names are irregular (token suffixes rounded differently between repos, gaps in a
history), so they are always read from the repository's real branch list
(`HfApi.list_repo_refs`) and parsed, never built by formula. A token budget resolves to the
nearest branch, with the distance reported.

Parsers, one per naming scheme:

* ``step{N}-tokens{M}B`` (OLMo-1B-hf), M in billions;
* ``stage1-step{N}-tokens{M}B`` (OLMo-2 stage 1; other stages are not pre-training
  checkpoints of the same run and are skipped);
* ``ckpt_{NNN}`` (LLM360 Amber): no token count in the name, so tokens =
  (NNN + 1) x AMBER_TOKENS_PER_CHECKPOINT, our reading of "about 3.5B tokens each"; Amber's
  ``main`` is its last checkpoint (ckpt_359) and is not listed twice.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

from overtrained.core.errors import FixableError
from overtrained.core.units import format_tokens, parse_tokens

AMBER_TOKENS_PER_CHECKPOINT = 3_500_000_000  # ours: the paper's "about 3.5B tokens each"
# A budget farther than this (relative) from every branch is an error, not a silent match.
MAX_RELATIVE_DISTANCE = 0.25

SCHEMES = {
    "olmo": re.compile(r"^step(?P<step>\d+)-tokens(?P<tokens>\d+(?:\.\d+)?)B$"),
    "olmo2-stage1": re.compile(r"^stage1-step(?P<step>\d+)-tokens(?P<tokens>\d+(?:\.\d+)?)B$"),
    "amber": re.compile(r"^ckpt_(?P<step>\d+)$"),
}


class CheckpointError(FixableError, ValueError):
    """A budget or revision that the repository's branches cannot satisfy, with a suggestion."""


@dataclass(frozen=True)
class HubCheckpoint:
    branch: str
    step: int
    tokens: int


def parse_branch(scheme: str, branch: str) -> HubCheckpoint | None:
    """The checkpoint a branch name stands for under `scheme` (None if it is not one)."""
    match = SCHEMES[scheme].match(branch)
    if not match:
        return None
    step = int(match["step"])
    if scheme == "amber":
        tokens = (step + 1) * AMBER_TOKENS_PER_CHECKPOINT
    else:
        tokens = round(float(match["tokens"]) * 1e9)
    return HubCheckpoint(branch, step, tokens)


def detect_scheme(branches: list[str]) -> str:
    """The naming scheme most of a repository's branches follow."""
    counts = {s: sum(parse_branch(s, b) is not None for b in branches) for s in SCHEMES}
    scheme = max(counts, key=counts.get)
    if counts[scheme] == 0:
        sample = ", ".join(sorted(branches)[:5])
        raise CheckpointError(
            f"no branch follows a known checkpoint naming scheme ({', '.join(SCHEMES)}); "
            f"branches include: {sample}"
        )
    return scheme


def checkpoints(branches: list[str], scheme: str | None = None) -> list[HubCheckpoint]:
    """Every checkpoint branch, in training order."""
    scheme = scheme or detect_scheme(branches)
    parsed = [parse_branch(scheme, b) for b in branches]
    return sorted((c for c in parsed if c), key=lambda c: (c.step, c.tokens))


@dataclass(frozen=True)
class Resolution:
    budget: str
    checkpoint: HubCheckpoint

    @property
    def distance(self) -> float:
        """Relative distance of the branch's tokens from the budget."""
        wanted = parse_tokens(self.budget)
        return (self.checkpoint.tokens - wanted) / wanted


def resolve(budgets: list[str], found: list[HubCheckpoint], repo: str) -> list[Resolution]:
    """The nearest checkpoint to each budget; an error (with the range there is) when the
    nearest is farther than MAX_RELATIVE_DISTANCE."""
    if not found:
        raise CheckpointError(f"{repo}: no checkpoint branches")
    out = []
    for budget in budgets:
        wanted = parse_tokens(budget)
        # Ties (two steps whose suffixes round alike) go to the later step: it saw more tokens.
        nearest = min(found, key=lambda c: (abs(c.tokens - wanted), -c.step))
        resolution = Resolution(budget, nearest)
        if abs(resolution.distance) > MAX_RELATIVE_DISTANCE:
            raise CheckpointError(
                f"{repo}: budget {budget} is {resolution.distance:+.0%} from the nearest "
                f"checkpoint ({nearest.branch}, {format_tokens(nearest.tokens)} tokens); the "
                f"repository spans {format_tokens(found[0].tokens)} to "
                f"{format_tokens(found[-1].tokens)} tokens"
            )
        out.append(resolution)
    return out


def check_revision(revision: str, branches: list[str], repo: str) -> None:
    """A revision typed by hand must exist; else name the nearest existing ones."""
    if revision in branches:
        return
    close = difflib.get_close_matches(revision, branches, n=3, cutoff=0.5)
    hint = f"; nearest: {', '.join(close)}" if close else ""
    raise CheckpointError(f"{repo}: no branch named {revision!r}{hint}")


def no_repository(repo: str) -> str:
    """The one-line message for a repository the Hub does not have (or will not show)."""
    return (
        f"no model repository {repo!r} on the Hub (check the owner/name spelling, and "
        "HF_TOKEN for a gated or private one)"
    )


def branch_heads(repo: str) -> dict[str, str]:
    """Branch name -> the commit it points at now, from the Hub (or HF_ENDPOINT); the Hub's
    errors are raised as they are, for callers that retry or translate them."""
    from huggingface_hub import HfApi

    refs = HfApi().list_repo_refs(repo)
    return {ref.name: ref.target_commit for ref in refs.branches}


def list_branches(repo: str) -> list[str]:
    """The repository's branch names, from the Hub (or HF_ENDPOINT)."""
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        return list(branch_heads(repo))
    except RepositoryNotFoundError:
        raise CheckpointError(no_repository(repo)) from None


def config_snippet(repo: str, resolutions: list[Resolution], family: str = "hub") -> str:
    """What to paste into a preset: the budgets and the branches they resolved to."""
    lines = [f"# {repo}: budget -> branch (tokens, distance)"]
    for r in resolutions:
        lines.append(
            f"#   {r.budget} -> {r.checkpoint.branch} "
            f"({format_tokens(r.checkpoint.tokens)}, {r.distance:+.1%})"
        )
    lines += ["families:", f"  {family}:", "    source: hub", f"    repo: {repo}"]
    lines.append(f"    revisions: [{', '.join(r.checkpoint.branch for r in resolutions)}]")
    return "\n".join(lines)

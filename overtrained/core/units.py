"""Token counts and learning rates as the workflow spells them in configs, paths and
wildcards: one parser and one canonical spelling each."""

from __future__ import annotations

_SUFFIX = {"K": 10**3, "M": 10**6, "B": 10**9, "T": 10**12}


def parse_tokens(value: int | str) -> int:
    """'250K' -> 250000, '1.5M' -> 1500000, 4096 -> 4096."""
    if isinstance(value, int):
        return value
    if value.isdigit():
        return int(value)
    number, suffix = value[:-1], value[-1]
    return int(round(float(number) * _SUFFIX[suffix]))


def format_tokens(tokens: int) -> str:
    """Canonical spelling of a token count: 250000 -> '250K', 1500000 -> '1.5M', 8192 -> '8192'."""
    for suffix in ("T", "B", "M", "K"):
        scale = _SUFFIX[suffix]
        if tokens >= scale:
            text = f"{tokens / scale:.6g}"
            if parse_tokens(text + suffix) == tokens and len(text.partition(".")[2]) <= 1:
                return text + suffix
    return str(tokens)


def format_lr(lr: float) -> str:
    """Canonical LR spelling used in paths and wildcards: 0.001 -> '0.001', 1e-05 -> '1e-05'."""
    return f"{lr:g}"

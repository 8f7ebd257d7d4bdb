"""Pinned manifests of hub families: every checkpoint (and the tokenizer) at a commit sha.

A hub family asks for token budgets or branch names. The first plan resolves them against
the repository's branch list and writes the answer to the family's manifest (a JSON file the
user commits with the config):

    {"repo": "allenai/OLMo-1B-hf", "scheme": "olmo",
     "checkpoints": [{"request": "1.5T", "revision": "step357000-tokens1497B",
                      "step": 357000, "tokens": 1497000000000, "distance": -0.002,
                      "sha": "<40 hex>", "pinned": "<time>"}, ...],
     "tokenizer": {"revision": "main", "sha": "<40 hex>", "pinned": "<time>"}}

Later plans read the manifest and need no network (compute nodes re-read it too). Only
requests the manifest lacks are resolved; a branch that has moved since it was pinned is
reported and stays pinned unless `repin` is asked for. The sha is a `params:` entry of the
download rules, so re-pinning makes exactly the dependent jobs stale.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from overtrained.core.config import ConfigError, hub_families
from overtrained.core.units import format_tokens, parse_tokens
from overtrained.hub import checkpoints as hub


@dataclass
class PinReport:
    """What pinning did, for the user: new pins, moved branches, re-pins."""

    pinned: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    repinned: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return [*self.pinned, *self.moved, *self.repinned]


def manifest_path(name: str, fam: dict) -> Path:
    return Path(fam["manifest"].replace("{family}", name))


_SHA = re.compile(r"^[0-9a-f]{40}$")
_ENTRY_KEYS = ("request", "revision", "step", "tokens", "sha")


def read_manifest(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path}: not valid JSON ({err}); fix it or delete it to re-pin"
        ) from None
    _check_manifest(path, manifest)
    return manifest


def _check_manifest(path: Path, manifest) -> None:
    """A manifest edited by hand must still say what a pin says: a 40-hex commit per entry,
    and a branch whose name gives the recorded step and tokens."""

    def bad(what: str):
        return ConfigError(f"{path}: {what}; fix it, or delete the file to pin afresh")

    if not isinstance(manifest, dict) or not isinstance(manifest.get("checkpoints"), list):
        raise bad("not a manifest (an object with a `checkpoints` list)")
    scheme = manifest.get("scheme")
    for i, entry in enumerate(manifest["checkpoints"]):
        missing = [k for k in _ENTRY_KEYS if not isinstance(entry, dict) or k not in entry]
        if missing:
            raise bad(f"checkpoints[{i}] lacks {', '.join(missing)}")
        if not _SHA.match(str(entry["sha"])):
            raise bad(f"checkpoints[{i}].sha {entry['sha']!r} is not a 40-hex commit sha")
        parsed = hub.parse_branch(scheme, entry["revision"]) if scheme in hub.SCHEMES else None
        if parsed is None or (parsed.step, parsed.tokens) != (entry["step"], entry["tokens"]):
            raise bad(
                f"checkpoints[{i}]: branch {entry['revision']!r} does not give step "
                f"{entry['step']} and {entry['tokens']} tokens under scheme {scheme!r}"
            )
    tokenizer = manifest.get("tokenizer")
    if tokenizer is not None and not _SHA.match(str(tokenizer.get("sha"))):
        raise bad(f"tokenizer.sha {tokenizer.get('sha')!r} is not a 40-hex commit sha")


def write_manifest(path: Path, manifest: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)


class HubOffline(hub.CheckpointError):
    """The branches are needed but HF_HUB_OFFLINE forbids asking the Hub."""


LIST_ATTEMPTS = 3  # the branch listing is retried on connection errors and 5xx answers


def list_refs(repo: str) -> dict[str, str]:
    """Branch name -> commit sha, from the Hub (or HF_ENDPOINT)."""
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    from overtrained.hub.download import one_line, transient_error

    if constants.is_offline_mode():  # HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) is set
        raise HubOffline(f"{repo}: offline mode is set")
    for attempt in range(1, LIST_ATTEMPTS + 1):
        try:
            return hub.branch_heads(repo)
        except RepositoryNotFoundError:
            raise hub.CheckpointError(hub.no_repository(repo)) from None
        except (HfHubHTTPError, httpx2.HTTPError, OSError) as err:
            if not transient_error(err) or attempt == LIST_ATTEMPTS:
                raise hub.CheckpointError(
                    f"could not list the branches of {repo!r} ({one_line(err)}); check the "
                    "network or HF_ENDPOINT, or run where the Hub is reachable"
                ) from None
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _requests(fam: dict) -> list[str]:
    return list(fam["tokens"]) if fam["tokens"] is not None else list(fam["revisions"])


def _budget_key(request: str) -> str:
    """One spelling per token count; requests that are not budgets (revisions pinned while
    the family asked for branch names) keep their own."""
    try:
        return format_tokens(parse_tokens(request))
    except (ValueError, KeyError):
        return f"revision:{request}"


def _resolve_missing(name: str, fam: dict, missing: list[str], refs: dict, scheme: str | None):
    """Manifest entries for requests not pinned yet (sha from the same branch listing)."""
    scheme = scheme or hub.detect_scheme(list(refs))
    repo, found = fam["repo"], hub.checkpoints(list(refs), scheme)
    entries = []
    if fam["tokens"] is not None:
        for resolution in hub.resolve(missing, found, repo):
            entries.append(_entry(resolution.budget, resolution.checkpoint, refs, resolution))
        return entries
    by_branch = {c.branch: c for c in found}
    for revision in missing:
        hub.check_revision(revision, list(refs), repo)
        ckpt = by_branch.get(revision)
        if ckpt is None:
            raise hub.CheckpointError(
                f"{repo}: branch {revision!r} does not follow the {scheme} "
                "naming scheme, so its token count is unknown; set families."
                f"{name}.scheme or pick a checkpoint branch"
            )
        entries.append(_entry(revision, ckpt, refs, None))
    return entries


def _entry(request: str, ckpt: hub.HubCheckpoint, refs: dict, resolution) -> dict:
    from overtrained.core import provenance

    return {
        "request": request,
        "revision": ckpt.branch,
        "step": ckpt.step,
        "tokens": ckpt.tokens,
        "distance": round(resolution.distance, 6) if resolution else 0.0,
        "sha": refs[ckpt.branch],
        "pinned": provenance.now(),
    }


def pin_family(name: str, fam: dict, repin=False, check: bool = False, refs_of=list_refs) -> tuple:
    """(checkpoint entries in token order, tokenizer entry, PinReport) for one hub family,
    reading the manifest and resolving only what it lacks. `check` lists the branches even
    when nothing is missing, to report moved ones; `repin` also moves their pins: True for
    every moved branch, or a collection of branch names for those only."""
    from overtrained.core import provenance

    path = manifest_path(name, fam)
    manifest = read_manifest(path) or {"repo": fam["repo"], "checkpoints": []}
    where = f"families.{name}"
    if manifest.get("repo") != fam["repo"]:
        raise ConfigError(
            f"{where}: manifest {path} pins repository {manifest.get('repo')!r}, not "
            f"{fam['repo']!r}; point {where}.manifest at a new file (or delete this one) to pin "
            "the new repository"
        )
    wanted = _requests(fam)
    key = _budget_key if fam["tokens"] is not None else str
    pinned = {key(e["request"]): e for e in manifest["checkpoints"]}
    missing = [r for r in wanted if key(r) not in pinned]
    tokenizer = manifest.get("tokenizer")
    if tokenizer is not None and tokenizer["revision"] != fam["tokenizer_revision"]:
        tokenizer = None
    report = PinReport()
    changed = bool(missing) or tokenizer is None
    if missing or tokenizer is None or repin or check:
        try:
            refs = refs_of(fam["repo"])
        except HubOffline:
            if not (missing or tokenizer is None):
                raise ConfigError(
                    f"{where}: checking the pins in {path} against the Hub needs it, but "
                    "offline mode (HF_HUB_OFFLINE) is set; run where the Hub is reachable"
                ) from None
            raise ConfigError(
                f"{where}: {path} has no pin for {', '.join(missing) or 'the tokenizer'} and "
                "HF_HUB_OFFLINE is set; run `overtrained pin` where the Hub is reachable, or "
                "copy the manifest here"
            ) from None
        except hub.CheckpointError as err:
            raise ConfigError(f"{where}: {err}") from None
        try:
            scheme = None if fam["scheme"] == "auto" else fam["scheme"]
            new = _resolve_missing(name, fam, missing, refs, scheme)
            if tokenizer is None:
                hub.check_revision(fam["tokenizer_revision"], list(refs), fam["repo"])
        except hub.CheckpointError as err:
            raise ConfigError(f"{where}: {err}") from None
        for entry in new:
            pinned[key(entry["request"])] = entry
            report.pinned.append(
                f"{where}: pinned {entry['request']} -> {entry['revision']} "
                f"({format_tokens(entry['tokens'])} tokens, {entry['distance']:+.1%}) "
                f"at {entry['sha'][:12]}"
            )
        if tokenizer is None:
            revision = fam["tokenizer_revision"]
            tokenizer = {"revision": revision, "sha": refs[revision], "pinned": provenance.now()}
        for entry in [*pinned.values(), tokenizer]:
            head = refs.get(entry["revision"])
            if head is None:
                report.moved.append(
                    f"{where}: branch {entry['revision']} is gone from the repository; results "
                    f"stay pinned to {entry['sha'][:12]} (downloads of it may now fail)"
                )
                continue
            if head == entry["sha"]:
                continue
            if repin is True or (repin and entry["revision"] in repin):
                report.repinned.append(
                    f"{where}: re-pinned {entry['revision']} {entry['sha'][:12]} -> {head[:12]}"
                )
                entry.update(sha=head, pinned=provenance.now())
            else:
                report.moved.append(
                    f"{where}: branch {entry['revision']} has moved to {head[:12]}; results stay "
                    f"pinned to {entry['sha'][:12]} (`overtrained pin --repin` moves them)"
                )
        manifest.update(
            repo=fam["repo"],
            scheme=fam["scheme"] if fam["scheme"] != "auto" else hub.detect_scheme(list(refs)),
            checkpoints=sorted(pinned.values(), key=lambda e: (e["tokens"], e["revision"])),
            tokenizer=tokenizer,
        )
    entries = sorted((pinned[key(r)] for r in wanted), key=lambda e: (e["tokens"], e["revision"]))
    seen: dict[str, str] = {}
    for entry in entries:
        if entry["revision"] in seen:
            raise ConfigError(
                f"{where}.tokens: {seen[entry['revision']]} and {entry['request']} both resolve "
                f"to {entry['revision']}; drop one of them"
            )
        seen[entry["revision"]] = entry["request"]
    if changed or report.repinned:
        write_manifest(path, manifest)
    return entries, tokenizer, report


def pin_config(cfg: dict, repin: bool = False, check: bool = False, refs_of=list_refs) -> list[str]:
    """Attach each hub family's pins to the config (`pinned`, `tokenizer_pin`); return the
    report lines (new pins, moved branches)."""
    lines = []
    for name, fam in hub_families(cfg).items():
        entries, tokenizer, report = pin_family(name, fam, repin, check, refs_of)
        fam["pinned"] = entries
        fam["tokenizer_pin"] = tokenizer
        lines += report.lines()
    return lines

"""Download a hub checkpoint at its pinned commit, verify every file, link it into results.

`download` fetches the files of one commit (always the pinned 40-hex sha, never a branch name)
into the shared Hugging Face cache (HF_HOME / HF_HUB_CACHE), checks each against the Hub's
own metadata at that commit, and links them into the checkpoint's `base/` folder, so
`from_pretrained(base_dir)` reads the verified cache.

What huggingface_hub (2.4) does on its own, read from its source (file_download.http_get,
_download_to_tmp_and_move, _snapshot_download):

* resume: within one call, a body cut short (the server closes the connection, a timeout, a
  refused connect) is re-requested with a Range header from the bytes already written, up to
  5 consecutive failures without progress, sleeping 1 s before each. Bytes are written in
  DOWNLOAD_CHUNK_SIZE (10 MiB) pieces, so it resumes from the last whole 10 MiB: a file
  smaller than that starts over (without a Range header). A connection *reset*
  (httpx ReadError) is not retried at all: it escapes the call.
* across calls: nothing partial is reused. Each download goes to a process-unique temporary
  file that is deleted when the call fails, so a retried call starts that file over; files
  completed before the failure are in the cache and are not fetched again.
* hashes: none. It checks only that the byte count equals the expected size ("Consistency
  check failed"); a body of the right length with wrong bytes is cached as if good. Hence the
  verification here: LFS files by the sha256 in the Hub's LFS metadata, other files by their
  git blob sha1, both from `model_info(..., files_metadata=True)` at the pinned commit.

That is the plain HTTP path (what the tests' stand-in Hub exercises). Files the Hub serves
through Xet storage (it sends X-Xet-Hash headers) are fetched by hf_xet instead when it is
installed, with its own retries; the verification here applies to them all the same.

Weights are safetensors; pickle weights (`pytorch_model*.bin`, `*.pt`, `*.pth`, `*.ckpt`)
only where a family sets `allow_pickle` and the revision has no safetensors (transformers
then reads them with torch.load(weights_only=True)). Where a revision has both, the pickles
are not downloaded.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from overtrained.core.errors import FixableError
from overtrained.hub import checkpoints

log = logging.getLogger(__name__)

# Backoff before the n-th retry of a Hub call: BACKOFF_SECONDS * 2 ** (n - 1).
BACKOFF_SECONDS = 2.0
PICKLE_WEIGHTS = ("pytorch_model*.bin", "*.pt", "*.pth", "*.ckpt")
KEEP = "provenance.json"  # the record written next to the links, kept when re-linking
_SHA = re.compile(r"^[0-9a-f]{40}$")
_CHUNK = 8 << 20


class DownloadError(FixableError, ValueError):
    """A download that cannot go on, in one line that says what to change."""


def is_pickle_weights(name: str) -> bool:
    base = PurePosixPath(name).name
    return any(fnmatch.fnmatchcase(base, pattern) for pattern in PICKLE_WEIGHTS)


def is_safetensors_weights(name: str) -> bool:
    return name.endswith(".safetensors")


@dataclass
class _Retries:
    """Retries of transient Hub failures, shared by every call of one download."""

    allowed: int
    used: int = 0

    def call(self, what: str, fn, *args, **kwargs):
        while True:
            try:
                return fn(*args, **kwargs)
            except Exception as err:
                if not transient_error(err):
                    raise
                if self.used >= self.allowed:
                    raise DownloadError(
                        f"{what}: the Hub could not be reached after {self.used} retries "
                        f"({type(err).__name__}: {one_line(err)}); check the network and run "
                        "again (files already downloaded stay in the cache)"
                    ) from err
                self.used += 1
                delay = BACKOFF_SECONDS * 2 ** (self.used - 1)
                log.warning(
                    "%s: %s: %s; retry %d of %d in %.0f s",
                    what,
                    type(err).__name__,
                    one_line(err),
                    self.used,
                    self.allowed,
                    delay,
                )
                time.sleep(delay)


def one_line(err: BaseException) -> str:
    return " ".join(str(err).split())[:300]


def transient_error(err: BaseException) -> bool:
    """A failure another try may not meet: the network, a Hub outage, a short body."""
    import httpx2
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    if isinstance(err, httpx2.TransportError):  # connect, read, reset, timeout, protocol
        return True
    if isinstance(
        err,
        (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, RemoteEntryNotFoundError),
    ):
        return False
    if isinstance(err, HfHubHTTPError):
        status = err.response.status_code if err.response is not None else None
        return status is None or status in (408, 429) or status >= 500
    if isinstance(err, LocalEntryNotFoundError):  # the Hub unreachable, the cache lacking it
        return True
    return isinstance(err, OSError) and "Consistency check failed" in str(err)


def download(
    repo: str,
    revision: str | None,
    sha: str,
    dest_dir: str | Path,
    allow_patterns: list[str],
    allow_pickle: bool = False,
    retries: int = 3,
    cache_dir: str | Path | None = None,
    require_weights: bool = True,
    trust_remote_code: bool = False,
) -> dict:
    """Download `repo` at commit `sha` (pinned from branch `revision`), verify it, link the
    files into `dest_dir`; return what provenance records (no token ever).

    `retries`: transient failures (network, Hub 5xx) retried, in all, across the metadata
    call, the download and any refetch. `cache_dir`: the hub cache folder (for tests; by
    default huggingface_hub's, from HF_HUB_CACHE or HF_HOME). `require_weights`: False for a
    tokenizer-only download. Unless `trust_remote_code`, a config that needs the repository's
    own code is refused before any weights move (here, on the login node, not on every GPU
    job that would load it)."""
    from huggingface_hub import constants

    if not _SHA.match(sha or ""):
        raise DownloadError(
            f"{repo}: {sha!r} is not a 40-hex commit sha; downloads are pinned by commit "
            "(run `overtrained pin` to pin the family's branches)"
        )
    if constants.is_offline_mode():
        raise DownloadError(
            f"{repo}: HF_HUB_OFFLINE is set, but downloading {sha} needs the Hub; run the "
            "download where there is internet access, with the same HF_HOME"
        )
    cache_dir = str(cache_dir) if cache_dir is not None else None
    retry = _Retries(retries)
    siblings = _files_metadata(repo, revision, sha, retry)
    wanted = _select(repo, sha, list(siblings), allow_patterns, allow_pickle, require_weights)
    if require_weights and not trust_remote_code and "config.json" in wanted:
        _check_config(repo, sha, cache_dir, retry)
    _check_space(repo, sha, wanted, siblings, cache_dir)
    snapshot = Path(_snapshot(repo, sha, wanted, cache_dir, retry))
    files, refetched = [], []
    for name in wanted:
        verified = _verify(snapshot / name, siblings[name])
        if verified is None:
            log.warning("%s: %s does not match the Hub's hash; downloading it again", repo, name)
            refetched.append(name)
            _refetch(repo, sha, name, snapshot, cache_dir, retry)
            verified = _verify(snapshot / name, siblings[name])
            if verified is None:
                expected, actual = _mismatch(snapshot / name, siblings[name])
                _remove_cached(snapshot / name)
                raise DownloadError(
                    f"{repo}: {name} at {sha} is corrupt twice over (expected {expected}, got "
                    f"{actual}, also after downloading it again); the cached copy was removed, "
                    "run again later or check the network path (a proxy rewriting content?)"
                )
        files.append({"name": name, "size": verified[0], "sha256": verified[1]})
    if require_weights and not trust_remote_code and "config.json" in wanted:
        _refuse_remote_code(repo, sha, snapshot / "config.json", verified=True)
    _link(snapshot, wanted, Path(dest_dir))
    branch_head = _branch_head(repo, revision, sha)
    log.info(
        "%s at %s: %d files, %d bytes, verified; linked into %s",
        repo,
        sha,
        len(files),
        sum(f["size"] for f in files),
        dest_dir,
    )
    return {
        "repo": repo,
        "revision": revision,
        "sha": sha,
        "branch_head": branch_head,
        "files": files,
        "total_bytes": sum(f["size"] for f in files),
        "cache": str(snapshot),
        "retries": retry.used,
        "refetched": refetched,
    }


# ----------------------------------------------------------------------------- the Hub's side


def _files_metadata(repo: str, revision: str | None, sha: str, retry: _Retries) -> dict:
    """Name -> RepoSibling (size, blob id, LFS sha256) of every file at `sha`."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        info = retry.call(
            f"{repo}: files of {sha}",
            HfApi().model_info,
            repo,
            revision=sha,
            files_metadata=True,
        )
    except GatedRepoError:
        raise DownloadError(
            f"model repository {repo!r} is gated: accept its terms on the Hub with your "
            "account and set HF_TOKEN"
        ) from None
    except RepositoryNotFoundError:
        raise DownloadError(checkpoints.no_repository(repo)) from None
    except RevisionNotFoundError:
        raise DownloadError(_missing_commit(repo, revision, sha, retry)) from None
    return {sibling.rfilename: sibling for sibling in info.siblings or []}


def _missing_commit(repo: str, revision: str | None, sha: str, retry: _Retries) -> str:
    """The one-line error for a pinned commit the repository does not have."""
    head = f"model repository {repo!r} has no commit {sha}"
    if not revision or revision == sha:
        return f"{head}; pin one from its branches (`overtrained pin`)"
    try:
        heads = retry.call(f"{repo}: branches", checkpoints.branch_heads, repo)
    except Exception as err:  # the error is about the commit; the branches only help
        return f"{head} (pinned from {revision!r}; its branches could not be listed: {err})"
    try:
        checkpoints.check_revision(revision, list(heads), repo)
    except checkpoints.CheckpointError as err:
        return (
            f"{head}, pinned from {revision!r}, and {str(err).removeprefix(repo + ': ')}; "
            "correct the revision in the config and re-pin (`overtrained pin --repin`)"
        )
    return (
        f"{head} (its history was rewritten?); branch {revision!r} now points at "
        f"{heads[revision]}: run `overtrained pin --repin` to move the pin"
    )


def _branch_head(repo: str, revision: str | None, sha: str) -> str | None:
    """The commit `revision` points at now (None: not a branch, or the lookup failed); a
    warning when it has moved on from `sha`."""
    if not revision or revision == sha:
        return None
    try:
        head = checkpoints.branch_heads(repo).get(revision)
    except Exception as err:  # reporting only: the download is pinned by sha regardless
        log.warning("%s: could not look up branch %r (%s)", repo, revision, one_line(err))
        return None
    if head is None:
        log.warning(
            "%s: branch %r no longer exists; results stay pinned to %s", repo, revision, sha
        )
    elif head != sha:
        log.warning(
            "branch %s of %s now points at %s, results stay pinned to %s; run "
            "`overtrained pin --repin` to move",
            revision,
            repo,
            head,
            sha,
        )
    return head


# ----------------------------------------------------------------------------- what to fetch


def _matching(names: list[str], patterns: list[str]) -> list[str]:
    from huggingface_hub.utils import filter_repo_objects

    return list(filter_repo_objects(names, allow_patterns=patterns))


def _select(
    repo: str,
    sha: str,
    names: list[str],
    patterns: list[str],
    allow_pickle: bool,
    require_weights: bool,
) -> list[str]:
    """The files to download: those the patterns match, under the weights policy."""
    where = f"{repo} at {sha[:12]}"
    matched = _matching(names, patterns)
    if not matched:
        sample = ", ".join(sorted(names)[:10]) + (" ..." if len(names) > 10 else "")
        raise DownloadError(
            f"{where}: allow_patterns {patterns} matched nothing; the revision has "
            f"{len(names)} files: {sample or '(none)'}"
        )
    unmatched = [p for p in patterns if not _matching(names, [p])]
    if unmatched:
        log.info("%s: patterns that matched nothing: %s", where, unmatched)
    if not require_weights:
        return matched
    safetensors = [n for n in matched if is_safetensors_weights(n)]
    pickles = [n for n in matched if is_pickle_weights(n)]
    if safetensors:
        if pickles:
            log.info("%s: safetensors weights present; not downloading pickles %s", where, pickles)
        return [n for n in matched if n not in pickles]
    other_safetensors = [n for n in names if is_safetensors_weights(n)]
    if other_safetensors:
        raise DownloadError(
            f"{where}: allow_patterns {patterns} match no weights, but the revision has "
            f"safetensors weights ({', '.join(other_safetensors[:5])}); add a pattern for them"
        )
    all_pickles = [n for n in names if is_pickle_weights(n)]
    if all_pickles and not allow_pickle:
        raise DownloadError(
            f"{where} holds only pickle weights ({', '.join(all_pickles[:5])}); set "
            "`families.<name>.allow_pickle: true` to use them (they load with "
            "torch.load(weights_only=True)) or pick another repository"
        )
    if not pickles:
        found = f"; its weights are {', '.join(all_pickles[:5])}" if all_pickles else ""
        raise DownloadError(
            f"{where}: allow_patterns {patterns} match no weights (*.safetensors, or with "
            f"allow_pickle {', '.join(PICKLE_WEIGHTS)}){found}"
        )
    return matched


def _exact(name: str) -> str:
    """An fnmatch pattern matching exactly `name`."""
    return re.sub(r"([\[*?])", r"[\1]", name)


def _check_config(repo: str, sha: str, cache_dir, retry: _Retries) -> None:
    """Fetch config.json alone first, so a repository needing remote code costs no weights."""
    from huggingface_hub import hf_hub_download

    path = retry.call(
        f"{repo}: config.json at {sha}",
        hf_hub_download,
        repo_id=repo,
        filename="config.json",
        revision=sha,
        cache_dir=cache_dir,
    )
    _refuse_remote_code(repo, sha, Path(path), verified=False)


def _refuse_remote_code(repo: str, sha: str, path: Path, verified: bool) -> None:
    from overtrained.models.loading import LoadingError, refuse_remote_code

    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        if not verified:
            return  # corrupt in transit: verification refetches it, then this runs again
        raise DownloadError(f"{repo}: config.json at {sha} is not JSON") from None
    try:
        # an unknown model_type needs remote code too; a config without one is left to loading
        where = Path(f"{repo}@{sha[:12]}/config.json")
        refuse_remote_code(where, config, check_type=bool(config.get("model_type")))
    except LoadingError as err:
        raise DownloadError(str(err)) from None


def _check_space(repo: str, sha: str, names: list[str], siblings: dict, cache_dir) -> None:
    """Refuse a download that cannot fit, before it fills the shared cache."""
    from huggingface_hub import constants

    root = Path(cache_dir or constants.HF_HUB_CACHE)
    snapshot = root / f"models--{repo.replace('/', '--')}" / "snapshots" / sha
    needed = sum(siblings[n].size or 0 for n in names if not (snapshot / n).exists())
    probe = root if root.exists() else next(p for p in root.parents if p.exists())
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DownloadError(
            f"{repo}: {sha} needs {needed / 1e9:.1f} GB more in the Hugging Face cache "
            f"({root}), which has {free / 1e9:.1f} GB free; free space or point HF_HOME at a "
            "larger shared filesystem"
        )


def _snapshot(repo: str, sha: str, names: list[str], cache_dir, retry: _Retries) -> str:
    from huggingface_hub import snapshot_download

    return retry.call(
        f"{repo}: download of {sha}",
        snapshot_download,
        repo_id=repo,
        revision=sha,
        allow_patterns=[_exact(n) for n in names],
        cache_dir=cache_dir,
    )


# ----------------------------------------------------------------------------- verification


def _hashes(path: Path, git_blob: bool) -> tuple[int, str, str | None]:
    """Size, sha256 and (if asked) git blob sha1 of a file's content."""
    size = path.stat().st_size
    sha256 = hashlib.sha256()
    sha1 = hashlib.sha1(b"blob %d\0" % size) if git_blob else None
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            sha256.update(block)
            if sha1 is not None:
                sha1.update(block)
    return size, sha256.hexdigest(), sha1.hexdigest() if sha1 is not None else None


def _expected(sibling) -> tuple[str, str]:
    """(kind, hash) the Hub records for a file."""
    if sibling.lfs is not None:
        return "sha256", sibling.lfs.sha256
    if not sibling.blob_id:
        raise DownloadError(f"the Hub gave no hash for {sibling.rfilename}; cannot verify it")
    return "git blob sha1", sibling.blob_id


def _verify(path: Path, sibling) -> tuple[int, str] | None:
    """(size, sha256) of a file that matches the Hub's hash; None if it does not."""
    kind, expected = _expected(sibling)
    if not path.is_file():
        return None
    size, sha256, blob = _hashes(path, git_blob=sibling.lfs is None)
    actual = sha256 if sibling.lfs is not None else blob
    if actual != expected or (sibling.size is not None and size != sibling.size):
        return None
    return size, sha256


def _mismatch(path: Path, sibling) -> tuple[str, str]:
    kind, expected = _expected(sibling)
    if not path.is_file():
        return f"{kind} {expected}", "no file"
    size, sha256, blob = _hashes(path, git_blob=sibling.lfs is None)
    actual = sha256 if sibling.lfs is not None else blob
    return f"{kind} {expected}", f"{actual} ({size} bytes)"


def _remove_cached(link: Path) -> None:
    """Remove a snapshot entry and the blob it points at."""
    target = Path(os.path.realpath(link))
    if target != link.absolute() and target.is_file():
        target.unlink()
    link.unlink(missing_ok=True)


def _refetch(repo: str, sha: str, name: str, snapshot: Path, cache_dir, retry: _Retries) -> None:
    from huggingface_hub import hf_hub_download

    _remove_cached(snapshot / name)
    retry.call(
        f"{repo}: download of {name} at {sha}",
        hf_hub_download,
        repo_id=repo,
        filename=name,
        revision=sha,
        cache_dir=cache_dir,
        force_download=True,
    )


# ----------------------------------------------------------------------------- the links


def _link(snapshot: Path, names: list[str], dest: Path) -> None:
    """dest/<name> -> snapshot/<name> (absolute) for each file, after removing the links an
    earlier download left there. Only links go: the base model's evaluations live in
    dest/eval/ and are never touched."""
    dest.mkdir(parents=True, exist_ok=True)
    for root, dirs, files in os.walk(dest, topdown=False):
        here = Path(root)
        for name in [*files, *dirs]:
            if (here / name).is_symlink():
                (here / name).unlink()
        for name in dirs:
            sub = here / name
            if sub.is_dir() and not sub.is_symlink() and not any(sub.iterdir()):
                sub.rmdir()
    for name in names:
        if name == KEEP:
            log.warning("%s: the repository's own %s is not linked (the record's name)", dest, KEEP)
            continue
        link = dest / name
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink((snapshot / name).absolute(), link)

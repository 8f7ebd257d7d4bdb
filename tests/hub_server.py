"""A local stand-in for the Hugging Face Hub endpoint (huggingface_hub honours HF_ENDPOINT).

It serves the few API routes the workflow's download code uses, from repositories held in
memory: branch lists (`list_repo_refs`), repo info and recursive trees at a revision
(`snapshot_download`), files metadata (`model_info(..., files_metadata=True)`), and file
downloads (`/resolve/`, HEAD and GET, with Range). Unknown repos and revisions answer as the
Hub does (404 with X-Error-Code), so the real client code raises its real errors.

Files named like LFS files (`lfs_suffixes`: weights) are described as the Hub describes LFS
files: metadata with `lfs: {sha256, size, pointerSize}` and a `blobId` that is the git blob of
the LFS pointer, resolve headers with X-Linked-Etag (the sha256, which the client names the
cached blob by) and X-Linked-Size.

Faults, per (repo_id, filename), each for the first `times` GETs of that file:

* ``hub.drop[key] = (n_bytes, times)``: full headers (Content-Length of the whole body) but
  only the first n_bytes of the body, then the connection is closed (a clean FIN, which the
  client sees as an incomplete body); ``(n_bytes, times, "reset")`` aborts it with a TCP
  reset instead. Range requests keep working, so a client can resume.
* ``hub.corrupt[key] = times``: a body of the right length with every byte flipped.

`hub.requests` logs every request as "METHOD /path" (a GET with a Range header as
"GET /path Range=bytes=N-"); `hub.gets(repo_id, filename)` counts a file's GETs.
"""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_FLIP = bytes(255 - b for b in range(256))  # bytes.translate table: every bit flipped


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(data: bytes) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file's content."""
    return b"version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %d\n" % (
        hashlib.sha256(data).hexdigest().encode(),
        len(data),
    )


@dataclass
class Repo:
    """Files per commit, and branch name -> commit."""

    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def add_commit(self, files: dict[str, bytes], branch: str | None = None) -> str:
        digest = hashlib.sha1(
            json.dumps(sorted((k, git_blob_sha(v)) for k, v in files.items())).encode()
            + str(len(self.commits)).encode()
        ).hexdigest()
        self.commits[digest] = dict(files)
        if branch:
            self.branches[branch] = digest
        return digest

    def resolve(self, revision: str) -> str | None:
        if revision in self.commits:
            return revision
        return self.branches.get(revision)


class StandInHub:
    """`with StandInHub() as hub:` serves on a free local port; hub.endpoint is its URL."""

    lfs_suffixes = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")

    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []
        self.drop: dict[tuple[str, str], tuple] = {}
        self.corrupt: dict[tuple[str, str], int] = {}
        self._faults = threading.Lock()

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        return self.repos.setdefault((repo_type, repo_id), Repo())

    def gets(self, repo_id: str, filename: str) -> list[str]:
        """The logged GETs of one file (at any revision)."""
        return [
            line
            for line in self.requests
            if line.startswith(f"GET /{repo_id}/resolve/")
            and line.split(" ")[1].endswith(f"/{filename}")
        ]

    def is_lfs(self, name: str) -> bool:
        return name.endswith(self.lfs_suffixes)

    def _metadata(self, name: str, data: bytes) -> dict:
        """What the Hub knows of a file: size, git blob id and, for LFS files, LFS details."""
        if not self.is_lfs(name):
            return {"size": len(data), "blob": git_blob_sha(data), "lfs": None}
        pointer = lfs_pointer(data)
        return {
            "size": len(data),
            "blob": git_blob_sha(pointer),
            "lfs": {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
                "pointerSize": len(pointer),
            },
        }

    def __enter__(self) -> StandInHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_HEAD(self):
                hub._handle(self, body=False)

            def do_GET(self):
                hub._handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # --------------------------------------------------------------------------- routes

    _API = re.compile(
        r"^/api/(?P<type>models|datasets)/(?P<repo>[^/]+/[^/]+)"
        r"(?:/(?P<what>refs|revision|tree)(?:/(?P<rev>[^/?]+))?(?:/(?P<path>[^?]*))?)?"
    )
    _RESOLVE = re.compile(
        r"^/(?:(?P<type>datasets)/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>[^?]+)"
    )

    def _handle(self, request: BaseHTTPRequestHandler, body: bool) -> None:
        from urllib.parse import parse_qs, unquote

        path = unquote(request.path.split("?")[0])
        query = parse_qs(request.path.partition("?")[2])
        ranged = request.headers.get("Range")
        self.requests.append(f"{request.command} {path}" + (f" Range={ranged}" if ranged else ""))
        if match := self._API.match(path):
            repo_type = "dataset" if match["type"] == "datasets" else "model"
            blobs = query.get("blobs", ["false"])[-1].lower() not in ("false", "0")
            self._api(request, repo_type, match["repo"], match["what"], match["rev"], body, blobs)
        elif match := self._RESOLVE.match(path):
            repo_type = "dataset" if match["type"] else "model"
            self._file(request, repo_type, match["repo"], match["rev"], match["path"], body)
        else:
            self._error(request, 404, "EntryNotFound", f"no route {path}")

    def _error(self, request, status: int, code: str, message: str) -> None:
        data = json.dumps({"error": message}).encode()
        request.send_response(status)
        request.send_header("X-Error-Code", code)
        request.send_header("X-Error-Message", message)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(data)

    def _json(self, request, obj, body: bool) -> None:
        data = json.dumps(obj).encode()
        request.send_response(200)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        request.end_headers()
        if body:
            request.wfile.write(data)

    def _lookup(self, request, repo_type, repo_id, revision):
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            self._error(request, 404, "RepoNotFound", f"Repository Not Found for url: {repo_id}")
            return None, None
        sha = repo.resolve(revision) if revision else None
        if revision and sha is None:
            self._error(request, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return repo, None
        return repo, sha

    def _api(self, request, repo_type, repo_id, what, revision, body, blobs=False) -> None:
        repo, sha = self._lookup(request, repo_type, repo_id, revision)
        if repo is None or (revision and sha is None):
            return
        if what == "refs":
            branches = [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": commit}
                for name, commit in repo.branches.items()
            ]
            self._json(request, {"branches": branches, "tags": [], "converts": []}, body)
        elif what == "revision":
            files = repo.commits[sha]
            siblings = []
            for name, data in sorted(files.items()):
                sibling = {"rfilename": name}
                if blobs:  # files_metadata=True
                    meta = self._metadata(name, data)
                    sibling |= {"size": meta["size"], "blobId": meta["blob"]}
                    if meta["lfs"]:
                        sibling["lfs"] = meta["lfs"]
                siblings.append(sibling)
            self._json(request, {"id": repo_id, "sha": sha, "siblings": siblings}, body)
        elif what == "tree":
            files = repo.commits[sha]
            entries = []
            for name, data in sorted(files.items()):
                meta = self._metadata(name, data)
                entry = {"type": "file", "oid": meta["blob"], "size": meta["size"], "path": name}
                if lfs := meta["lfs"]:
                    entry["lfs"] = {
                        "oid": lfs["sha256"],
                        "size": lfs["size"],
                        "pointerSize": lfs["pointerSize"],
                    }
                entries.append(entry)
            self._json(request, entries, body)
        else:
            self._json(request, {"id": repo_id}, body)

    def _file(self, request, repo_type, repo_id, revision, name, body) -> None:
        repo, sha = self._lookup(request, repo_type, repo_id, revision)
        if repo is None or sha is None:
            return
        data = repo.commits[sha].get(name)
        if data is None:
            self._error(request, 404, "EntryNotFound", f"{name} not found at {revision}")
            return
        start = 0
        if match := re.match(r"bytes=(\d+)-", request.headers.get("Range", "")):
            start = int(match[1])
        meta = self._metadata(name, data)
        request.send_response(206 if start else 200)
        request.send_header("X-Repo-Commit", sha)
        request.send_header("ETag", f'"{meta["blob"]}"')
        if meta["lfs"]:  # the client names the cached blob by X-Linked-Etag, as on the Hub
            request.send_header("X-Linked-Etag", f'"{meta["lfs"]["sha256"]}"')
            request.send_header("X-Linked-Size", str(meta["size"]))
        request.send_header("Accept-Ranges", "bytes")
        if start:
            request.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        request.send_header("Content-Length", str(len(data) - start))
        request.end_headers()
        if not body:
            return
        payload = data[start:]
        drop, flip = self._take_faults(repo_id, name)
        if flip:
            payload = payload.translate(_FLIP)
        if drop is None:
            request.wfile.write(payload)
            return
        n_bytes, reset = drop
        request.wfile.write(payload[:n_bytes])
        request.wfile.flush()
        request.close_connection = True
        if reset:  # SO_LINGER 0: close() sends RST instead of FIN
            request.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            request.connection.close()
        else:
            request.connection.shutdown(socket.SHUT_RDWR)

    def _take_faults(self, repo_id: str, name: str) -> tuple[tuple[int, bool] | None, bool]:
        """Whether this GET is cut short ((n_bytes, reset) or None) and whether it is
        corrupted, counting down the faults asked for."""
        key = (repo_id, name)
        with self._faults:
            drop = None
            if key in self.drop:
                n_bytes, times, *mode = self.drop[key]
                if times > 0:
                    drop = (n_bytes, mode == ["reset"])
                    self.drop[key] = (n_bytes, times - 1, *mode)
            flip = self.corrupt.get(key, 0) > 0
            if flip:
                self.corrupt[key] -= 1
        return drop, flip

"""A local stand-in for the Hugging Face Hub endpoint (huggingface_hub honours HF_ENDPOINT).

It serves the few API routes the workflow's download code uses, from repositories held in
memory: branch lists (`list_repo_refs`), repo info and recursive trees at a revision
(`snapshot_download`), and file downloads (`/resolve/`, HEAD and GET, with Range). Unknown
repos and revisions answer as the Hub does (404 with X-Error-Code), so the real client
code raises its real errors.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def git_blob_sha(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


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

    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[str] = []

    def repo(self, repo_type: str, repo_id: str) -> Repo:
        return self.repos.setdefault((repo_type, repo_id), Repo())

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
        from urllib.parse import unquote

        path = unquote(request.path.split("?")[0])
        self.requests.append(f"{request.command} {path}")
        if match := self._API.match(path):
            repo_type = "dataset" if match["type"] == "datasets" else "model"
            self._api(request, repo_type, match["repo"], match["what"], match["rev"], body)
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

    def _api(self, request, repo_type, repo_id, what, revision, body) -> None:
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
            siblings = [{"rfilename": name} for name in sorted(files)]
            self._json(request, {"id": repo_id, "sha": sha, "siblings": siblings}, body)
        elif what == "tree":
            files = repo.commits[sha]
            entries = [
                {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": name}
                for name, data in sorted(files.items())
            ]
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
        request.send_response(206 if start else 200)
        request.send_header("X-Repo-Commit", sha)
        request.send_header("ETag", f'"{git_blob_sha(data)}"')
        request.send_header("Content-Length", str(len(data) - start))
        request.end_headers()
        if body:
            request.wfile.write(data[start:])

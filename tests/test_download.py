"""`seggpt-video download` against a stand-in for the Hugging Face hub on 127.0.0.1.

The stand-in answers the requests huggingface_hub makes for a file: HEAD and GET of
``/{repo}/resolve/{revision}/{file}`` with X-Repo-Commit, ETag and Content-Length, and Range
requests with 206. huggingface_hub's own code does the download, as it does from the real hub;
the files it serves are a small SegGPT in the hub's format (see test_model_choice).

One test starts the command in its own process with HF_ENDPOINT and HF_HUB_CACHE set and its
stderr on a terminal, as a user runs it; the others run the command line in this process, with
huggingface_hub's endpoint constants (read from HF_ENDPOINT at import) pointed at the stand-in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pty
import re
import shutil
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import huggingface_hub.constants
import pytest
from huggingface_hub import hf_hub_url
from test_model_choice import REPO_FOLDER, same_weights, write_hf_folder
from tqdm import tqdm

from seggpt_video.cli.app import main
from seggpt_video.model import SegGPT
from seggpt_video.model.checkpoint import find_weights
from seggpt_video.predictor import load_predictor

REPO = "BAAI/seggpt-vit-large"
COMMIT = "9f3c2a1b0e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b"


@dataclass
class FakeHub:
    """The files of one repo at one commit, served over HTTP; every request is logged.

    faults: (method, file) -> HTTP status answered instead of the file. cut_once: files whose
    first GET sends half the body and closes the connection (a dropped download).
    """

    url: str
    files: dict[str, bytes]
    log: list[tuple[str, str, str | None]] = field(default_factory=list)
    faults: dict[tuple[str, str], int] = field(default_factory=dict)
    cut_once: set[str] = field(default_factory=set)

    def requests(self, method: str, file: str) -> list[str | None]:
        """The Range headers of the logged requests of one kind (None: the whole file)."""
        return [byte_range for m, f, byte_range in self.log if (m, f) == (method, file)]


def serve(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    prefix = f"/{REPO}/resolve/main/"

    class Handler(BaseHTTPRequestHandler):
        def answer(self, body: bool) -> None:
            file = self.path.removeprefix(prefix)
            hub.log.append((self.command, file, self.headers.get("Range")))
            status = hub.faults.get((self.command, file))
            if not self.path.startswith(prefix) or file not in hub.files:
                status = 404
            if status is not None:
                self.send_response(status)
                self.send_header("X-Error-Message", f"the stand-in hub answers {status}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = hub.files[file]
            start = 0
            if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or ""):
                start = int(match.group(1))
            self.send_response(206 if start else 200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data) - start))
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.end_headers()
            if not body:
                return
            if file in hub.cut_once:
                hub.cut_once.discard(file)
                self.wfile.write(data[start : len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(data[start:])

        def do_HEAD(self) -> None:
            self.answer(body=False)

        def do_GET(self) -> None:
            self.answer(body=True)

        def log_message(self, *args) -> None:
            pass

    return Handler


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> tuple[SegGPT, dict[str, bytes]]:
    """A small SegGPT and its files as the hub serves them (config.json, model.safetensors)."""
    folder = tmp_path_factory.mktemp("published")
    source = write_hf_folder(folder, seed=5)
    return source, {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.fixture
def hub(published, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """The stand-in hub, running; huggingface_hub in this process pointed at it."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    fake = FakeHub(f"http://127.0.0.1:{server.server_address[1]}", dict(published[1]))
    server.RequestHandlerClass = serve(fake)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", fake.url)
    template = fake.url + "/{repo_id}/resolve/{revision}/{filename}"
    monkeypatch.setattr(huggingface_hub.constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    assert hf_hub_url(REPO, "config.json").startswith(fake.url + "/")  # never the real hub
    yield fake
    server.shutdown()
    server.server_close()
    thread.join()


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "hub"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def seggpt_video(*args: str, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[int, str, str]:
    """The command line in this process, through main(): exit code, stdout, stderr."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["seggpt-video", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, f"expected one line on stderr, got:\n{stderr}"
    return lines[0]


def run_in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """The command in its own process, stderr on a pseudo-terminal: code, stdout, stderr."""
    leader, follower = pty.openpty()
    # A terminal 100 columns wide (a new one has none, and tqdm would draw a bar of no width).
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=follower)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: the process has ended
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    stdout = process.stdout.read().decode()
    process.wait(timeout=60)
    return process.returncode, stdout, b"".join(chunks).decode(errors="replace")


def test_download_into_the_cache_shows_progress_and_the_default_model_then_uses_it(
    hub: FakeHub, hub_cache: Path, published, monkeypatch, capsys
):
    source, files = published
    env = {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_CACHE": str(hub_cache)}
    command = [sys.executable, "-m", "seggpt_video.cli", "download", "seggpt-vit-large"]
    code, stdout, stderr = run_in_a_terminal(command, env)
    assert code == 0, stdout + stderr
    # huggingface_hub's progress bar, on the terminal, up to the file's size.
    size = tqdm.format_sizeof(len(files["model.safetensors"]))
    assert re.search(rf"model\.safetensors: +100%\|.*\| {size}/{size} ", stderr), stderr
    snapshot = hub_cache / REPO_FOLDER / "snapshots" / COMMIT
    assert f"downloaded to {snapshot}" in stdout
    assert {name: (snapshot / name).read_bytes() for name in files} == files
    assert (hub_cache / REPO_FOLDER / "refs" / "main").read_text() == COMMIT
    assert hub.requests("GET", "model.safetensors") == [None]
    # The model choice finds it: the default is now the downloaded model.
    assert find_weights("seggpt-vit-large") == snapshot
    predictor = load_predictor(device="cpu")
    assert predictor.name == "seggpt-vit-large" and same_weights(predictor.model, source)
    # A second call finds the weights and asks the hub nothing.
    requests = len(hub.log)
    code, out, err = seggpt_video(
        "download", "seggpt-vit-large", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0 and err == ""
    assert out == f"seggpt-vit-large: already here, nothing to download: {snapshot}\n"
    assert len(hub.log) == requests


@pytest.mark.parametrize("how", ["--to", "SEGGPT_VIDEO_WEIGHTS"])
def test_download_to_a_folder_found_through_the_weights_variable(
    how: str, hub: FakeHub, hub_cache: Path, published, tmp_path: Path, monkeypatch, capsys
):
    source, files = published
    folder = tmp_path / "weights"
    if how == "--to":
        args = ["download", "seggpt-vit-large", "--to", str(folder)]
    else:
        monkeypatch.setenv("SEGGPT_VIDEO_WEIGHTS", str(folder))
        args = ["download", "seggpt-vit-large"]
    code, out, err = seggpt_video(*args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, err
    target = folder / "seggpt-vit-large"
    assert {name: (target / name).read_bytes() for name in files} == files
    assert not (hub_cache / REPO_FOLDER).exists()
    hint = f"export SEGGPT_VIDEO_WEIGHTS={folder}"
    assert (hint in out) == (how == "--to"), out
    monkeypatch.setenv("SEGGPT_VIDEO_WEIGHTS", str(folder))
    assert find_weights("seggpt-vit-large") == target
    predictor = load_predictor(device="cpu")
    assert predictor.name == "seggpt-vit-large" and same_weights(predictor.model, source)
    requests = len(hub.log)
    code, out, err = seggpt_video(*args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "already here" in out and len(hub.log) == requests


@pytest.mark.parametrize(
    "fault,says",
    [
        (("GET", "model.safetensors"), r"500"),  # the hub fails while sending the weights
        (("HEAD", "model.safetensors"), r"403"),  # the hub refuses to say what it holds
    ],
    ids=["server-error-on-get", "forbidden-on-head"],
)
def test_a_failed_download_is_one_line_and_the_next_call_fetches_only_what_is_missing(
    fault, says, hub: FakeHub, hub_cache: Path, monkeypatch, capsys
):
    hub.faults[fault] = int(says)
    code, out, err = seggpt_video(
        "download", "seggpt-vit-large", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 1, out + err
    line = one_line(err)
    assert line.startswith("error: seggpt-vit-large: download from ")
    assert re.search(says, line) and "run the same command again" in line, line
    assert not list(hub_cache.rglob("*.incomplete"))
    assert find_weights("seggpt-vit-large") is None
    # The config arrived before the failure and is not fetched again.
    assert hub.requests("GET", "config.json") == [None]
    hub.faults.clear()
    code, out, err = seggpt_video(
        "download", "seggpt-vit-large", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    assert hub.requests("GET", "config.json") == [None]
    assert find_weights("seggpt-vit-large") == hub_cache / REPO_FOLDER / "snapshots" / COMMIT


def test_a_dropped_connection_resumes_where_it_stopped(
    hub: FakeHub, hub_cache: Path, published, monkeypatch, capsys
):
    """huggingface_hub writes what it received in chunks (10 MB) and asks for the rest.

    The weights here are smaller than one chunk: chunks of 64 KiB stand in for the real size.
    """
    _, files = published
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 65536)
    hub.cut_once.add("model.safetensors")
    code, _, err = seggpt_video(
        "download", "seggpt-vit-large", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0, err
    first, second = hub.requests("GET", "model.safetensors")
    start = int(re.fullmatch(r"bytes=(\d+)-", second or "").group(1))
    assert first is None and 0 < start <= len(files["model.safetensors"]) // 2
    snapshot = hub_cache / REPO_FOLDER / "snapshots" / COMMIT
    assert (snapshot / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_too_little_disk_space_is_one_line_before_anything_is_written(
    hub: FakeHub, hub_cache: Path, monkeypatch, capsys
):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: real(path)._replace(free=1000))
    code, _, err = seggpt_video(
        "download", "seggpt-vit-large", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 1
    assert re.search(r"seggpt-vit-large: .*free disk space", one_line(err))
    assert hub.requests("GET", "model.safetensors") == []
    assert not list(hub_cache.rglob("*.incomplete"))


def test_only_download_reaches_the_hub(hub: FakeHub, hub_cache: Path, monkeypatch, capsys):
    """With a hub that would serve the weights, naming the model still does not fetch it."""
    code, _, err = seggpt_video(
        "info", "--model", "seggpt-vit-large", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 2
    assert "`seggpt-video download seggpt-vit-large`" in one_line(err)
    assert load_predictor(device="cpu").name == "seggpt-tiny"
    assert hub.log == []


def test_the_packaged_model_is_not_downloaded(hub: FakeHub, monkeypatch, capsys):
    code, out, err = seggpt_video("download", "seggpt-tiny", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and err == ""
    assert out.startswith("seggpt-tiny: packaged with seggpt-video, nothing to download: ")
    assert hub.log == []

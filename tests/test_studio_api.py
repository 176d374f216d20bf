"""The studio's JSON API through Starlette's test client, and the `studio` command.

Security (token, Host, sizes), frames, objects, annotations (import, brush, eraser, GrabCut box,
undo), propagation with events, correction (frames before the edit byte-equal, after it equal to
a fresh run with the correction), cancel and resume, export equal to the shown `run` command,
reopening, and Ctrl-C of the real server. Uses the packaged seggpt-tiny on a small clip.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_media import make_video, moving_shapes

pytest.importorskip("starlette", reason="the studio extra is not installed")
pytest.importorskip("cv2", reason="the studio extra is not installed")
httpx = pytest.importorskip("httpx", reason="the test client needs httpx")

from starlette.testclient import TestClient  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

import seggpt_video  # noqa: E402
from seggpt_video.cli.app import app as cli_app  # noqa: E402
from seggpt_video.io.masks import DAVIS_PALETTE, read_mask  # noqa: E402
from seggpt_video.studio.server import MAX_UPLOAD_BYTES, StudioConfig, create_app  # noqa: E402

FRAMES, HEIGHT, WIDTH = 12, 96, 128
MODEL = ["--model", "seggpt-tiny", "--device", "cpu", "--dtype", "fp32"]
BASE = "http://127.0.0.1"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def scene():
    return moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=2, seed=3)


@pytest.fixture(scope="module")
def clip(tmp_path_factory, scene) -> Path:
    frames, _ = scene
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames, fps=25)


@pytest.fixture(scope="module")
def segmenter():
    return seggpt_video.load("seggpt-tiny", device="cpu", dtype="fp32", lazy=True)


class Session:
    """A studio on a fresh OUT with a test client; `api` sends the token header."""

    def __init__(self, clip: Path, out: Path, segmenter, **extra) -> None:
        self.config = StudioConfig(
            video=clip, out=out, segmenter=segmenter, model_options=MODEL[2:], warm_up=False,
            **extra,
        )  # fmt: skip
        self.app = create_app(self.config)
        self.client = TestClient(self.app, base_url=BASE)
        self.client.__enter__()
        self.headers = {"X-Studio-Token": self.config.token}
        self.out = out
        self.wait_ready()

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)

    def wait_ready(self) -> dict:
        for _ in range(200):
            session = self.api("GET", "/api/session").json()
            if session["video"]["ready"]:
                return session
            time.sleep(0.05)
        raise AssertionError("the video was never counted")

    def wait_idle(self, timeout: float = 120) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            status = self.api("GET", "/api/status").json()
            if not status["running"]:
                return status
            time.sleep(0.1)
        raise AssertionError("propagation did not end")

    def add_objects(self, count: int) -> None:
        for number in range(count):
            assert self.api("POST", "/api/objects", json={"name": f"o{number}"}).status_code == 201

    def upload(self, frame: int, labels: np.ndarray) -> httpx.Response:
        return self.api("PUT", f"/api/annotations/{frame}.png", content=palette_png(labels))

    def close(self) -> None:
        if self.client is not None:
            self.client.__exit__(None, None, None)
            self.client = None


@pytest.fixture
def open_studio(clip, segmenter, tmp_path):
    sessions: list[Session] = []

    def start(out: Path | None = None, **extra) -> Session:
        session = Session(clip, out or tmp_path / "out", segmenter, **extra)
        sessions.append(session)
        return session

    yield start
    for session in sessions:
        session.close()


def palette_png(labels: np.ndarray) -> bytes:
    image = Image.fromarray(labels.astype(np.uint8))
    image.putpalette(DAVIS_PALETTE.tobytes())
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def png_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def no_partials(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".partial")]


def run_command(command: str, output: Path) -> subprocess.CompletedProcess:
    """The page's `seggpt-video run ...` command, run in a shell-like way into `output`."""
    words = shlex.split(command)
    assert words[:2] == ["seggpt-video", "run"]
    words[words.index("-o") + 1] = str(output)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "seggpt_video.cli", *words[1:]]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


# --- security -----------------------------------------------------------------------------------


def test_every_request_needs_the_token(open_studio):
    studio = open_studio()
    client, token = studio.client, studio.config.token
    for path in ("/", "/api/session", "/api/frames/0.jpg", "/static/studio.js", "/api/nothing"):
        answer = client.get(path)
        assert answer.status_code == 403, path
        assert "token" in answer.json()["error"]
    assert client.get("/api/session", headers={"X-Studio-Token": "wrong"}).status_code == 403
    assert client.get(f"/api/session?token={token[:-1]}").status_code == 403

    page = client.get(f"/?token={token}")  # the printed URL: the page, and a cookie for the rest
    assert page.status_code == 200 and "<canvas" in page.text
    assert "HttpOnly" in page.headers["set-cookie"]
    assert client.get("/api/session").status_code == 200  # by cookie
    assert client.get("/static/studio.js").status_code == 200
    # a change needs the header: a cookie alone is what a cross-site form would send
    assert client.post("/api/objects", json={}).status_code == 403
    assert client.post("/api/objects", json={}, headers=studio.headers).status_code == 201
    # every URL the page uses is relative (it works behind a reverse proxy's prefix)
    for text in (page.text, client.get("/static/studio.js").text):
        assert not any(s in text for s in ('"/api', "'/api", "`/api", 'src="/', 'href="/'))
        assert "http://" not in text and "https://" not in text  # no CDN, nothing remote


def test_host_header_is_checked_against_dns_rebinding(open_studio):
    studio = open_studio(allow_hosts=["studio.example.org"])
    for host in ("localhost:8888", "127.0.0.1", "[::1]:8888", "studio.example.org"):
        answer = studio.api("GET", "/api/session", headers={"Host": host})
        assert answer.status_code == 200, host
    for host in ("evil.example", "127.0.0.1.evil.example:80", ""):
        answer = studio.api("GET", "/api/session", headers={"Host": host})
        assert answer.status_code == 403, host
        assert "Host" in answer.json()["error"]


def test_bad_requests_get_a_4xx_and_one_line(open_studio):
    studio = open_studio()
    studio.add_objects(1)
    cases = [
        ("GET", "/api/frames/12.jpg", {}, 404),  # out of range
        ("GET", "/api/frames/-1.jpg", {}, 404),  # not an int: no route
        ("GET", "/api/frames/..%2F..%2Fetc%2Fpasswd.jpg", {}, 404),
        ("GET", "/api/frames/0.jpg?width=abc", {}, 400),
        ("PATCH", "/api/objects/7", {"json": {"name": "x"}}, 404),
        ("DELETE", "/api/objects/7", {}, 404),
        ("PATCH", "/api/objects/1", {"json": {"colour": "red"}}, 400),
        ("POST", "/api/objects", {"content": b"{not json"}, 400),
        ("POST", "/api/objects", {"content": b"[1, 2]"}, 400),
        ("PUT", "/api/annotations/0.png", {"content": b"\x89PNG\r\n\x1a\nbroken"}, 400),
        ("PUT", "/api/annotations/0.png", {"content": b""}, 400),
        ("PUT", "/api/annotations/99.png", {"content": palette_png(np.ones((2, 2)))}, 404),
        ("POST", "/api/annotations/0/edit", {"json": {"operations": []}}, 400),
        ("POST", "/api/annotations/0/edit", {"json": {"operations": [{"tool": "lasso"}]}}, 400),
        (
            "POST",
            "/api/annotations/0/edit",
            {
                "json": {
                    "operations": [{"tool": "brush", "object": 9, "size": 5, "points": [[1, 1]]}]
                }
            },  # fmt: skip
            400,
        ),
        (
            "POST",
            "/api/annotations/0/edit",
            {"json": {"operations": [{"tool": "box", "object": 1, "box": [5, 5, 5, 40]}]}},
            400,
        ),
        ("POST", "/api/annotations/0/undo", {}, 409),
        ("DELETE", "/api/annotations/0.png", {}, 404),
        ("GET", "/api/results/0.png", {}, 404),
        ("POST", "/api/propagate", {}, 400),  # nothing annotated yet
        ("POST", "/api/export", {"json": {"formats": ["gif"]}}, 400),
        ("GET", "/api/overlay/0.png?source=elsewhere", {}, 400),
    ]
    for method, path, kwargs, code in cases:
        answer = studio.api(method, path, **kwargs)
        assert answer.status_code == code, (method, path, answer.text)
        message = answer.json()["error"]
        assert message and "\n" not in message, (path, message)
    # a mask of another size is refused, naming both sizes; nothing is written
    wrong = studio.upload(0, np.ones((HEIGHT // 2, WIDTH), np.uint8))
    assert wrong.status_code == 400 and f"{WIDTH}x{HEIGHT}" in wrong.json()["error"]
    too_big = studio.api("PUT", "/api/annotations/0.png", content=b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert too_big.status_code == 413
    assert list((studio.out / "annotations").iterdir()) == []
    assert no_partials(studio.out) == []


# --- frames, objects, annotations ---------------------------------------------------------------


def test_frames_are_served_at_display_size(open_studio, clip):
    from seggpt_video.io.video import open_video

    studio = open_studio()
    session = studio.wait_ready()
    video = session["video"]
    assert (video["num_frames"], video["width"], video["height"]) == (FRAMES, WIDTH, HEIGHT)
    assert video["frame_names"][:2] == ["00000", "00001"]
    full = Image.open(io.BytesIO(studio.api("GET", "/api/frames/5.jpg").content))
    assert full.size == (WIDTH, HEIGHT)
    small = Image.open(io.BytesIO(studio.api("GET", "/api/frames/5.jpg?width=60").content))
    assert small.size == (64, 48)  # rounded up to 16 px, aspect kept
    with open_video(clip) as source:  # the same decoder as run: JPEG noise only
        expected = source.get_frame(5).astype(np.int16)
    assert np.abs(np.asarray(full.convert("RGB"), np.int16) - expected).mean() < 4


def test_frames_in_order_are_decoded_forward_and_jumps_seek(clip, scene, monkeypatch):
    # following a run asks for frame after frame: a seek for each cost the page 22 % of the speed
    from seggpt_video.io.video import open_video
    from seggpt_video.studio.frames import FrameStore

    store = FrameStore(clip)
    store.wait(30)
    with open_video(clip) as source:
        expected = [source.get_frame(i) for i in range(FRAMES)]
    readers = []
    original = store._source.iter_frames
    monkeypatch.setattr(
        store._source, "iter_frames", lambda start=0: readers.append(start) or original(start)
    )
    order = [0, 1, 2, 4, 7, 8, 3, 3, 11, 5, 6]
    for index in order:
        assert np.array_equal(store.frame(index), expected[index]), index
    # forward (4, 7, 11) reuses the reader; going back or a repeat seeks
    assert readers == [0, 3, 3, 5]
    store.close()


def test_objects_are_added_renamed_and_removed(open_studio, scene):
    studio = open_studio()
    studio.add_objects(2)
    renamed = studio.api("PATCH", "/api/objects/2", json={"name": "  swan ", "colour": "#00FF00"})
    assert renamed.json() == {"id": 2, "name": "swan", "colour": "#00ff00"}
    labels = scene[1][0]
    assert studio.upload(0, labels).status_code == 200
    assert studio.api("DELETE", "/api/objects/1").status_code == 200
    kept = read_mask(studio.out / "annotations" / "00000.png")
    assert set(np.unique(kept)) == {0, 2} and np.array_equal(kept == 2, labels == 2)
    saved = json.loads((studio.out / "studio.json").read_text())
    assert [o["id"] for o in saved["objects"]] == [2] and saved["annotations"] == [0]
    assert studio.api("POST", "/api/objects", json={}).json()["id"] == 1  # the free id again


@pytest.mark.parametrize("kind", ["palette", "gray", "rgb"])
def test_imported_masks_are_read_as_mask_reads_them(open_studio, scene, tmp_path, kind):
    labels = scene[1][0]
    if kind == "palette":
        data = palette_png(labels)
    else:
        image = (
            Image.fromarray(((labels > 0) * 255).astype(np.uint8))
            if kind == "gray"
            else Image.fromarray(
                np.array([[0, 0, 0], [250, 10, 10], [10, 10, 250]], np.uint8)[labels]
            )  # fmt: skip
        )
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        data = buffer.getvalue()
    source = tmp_path / "given.png"
    source.write_bytes(data)
    studio = open_studio()
    answer = studio.api("PUT", "/api/annotations/0.png", content=data)
    assert answer.status_code == 200, answer.text
    expected = read_mask(source, size=(HEIGHT, WIDTH))
    assert np.array_equal(read_mask(studio.out / "annotations" / "00000.png"), expected)
    assert [o["id"] for o in answer.json()["objects"]] == sorted(set(np.unique(expected)) - {0})
    stored = studio.api("GET", "/api/annotations/0.png")
    assert stored.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(stored.content))), expected)


def test_brush_eraser_and_undo(open_studio):
    studio = open_studio()
    studio.add_objects(2)

    def edit(*operations) -> np.ndarray:
        answer = studio.api("POST", "/api/annotations/3/edit", json={"operations": operations})
        assert answer.status_code == 200, answer.text
        return read_mask(studio.out / "annotations" / "00003.png")

    dot = edit({"tool": "brush", "object": 1, "size": 10, "points": [[30, 40]]})
    ys, xs = np.nonzero(dot)
    assert set(np.unique(dot)) == {0, 1} and abs(len(ys) - np.pi * 25) < 20
    assert abs(xs.mean() - 30) < 1 and abs(ys.mean() - 40) < 1
    line = edit({"tool": "brush", "object": 2, "size": 4, "points": [[50, 10], [110, 10]]})
    assert (line == 2).sum() > 200 and (line == 1).sum() == (dot == 1).sum()
    erased = edit({"tool": "eraser", "object": 1, "size": 6, "points": [[30, 40]]})
    assert (erased == 1).sum() < (dot == 1).sum() and (erased == 2).sum() == (line == 2).sum()
    assert studio.api("POST", "/api/annotations/3/undo").status_code == 200
    assert np.array_equal(read_mask(studio.out / "annotations" / "00003.png"), line)
    studio.api("POST", "/api/annotations/3/undo")
    studio.api("POST", "/api/annotations/3/undo")  # back to nothing: no annotation at all
    assert not (studio.out / "annotations" / "00003.png").exists()
    assert studio.api("POST", "/api/annotations/3/undo").status_code == 409


def test_a_box_becomes_the_object_by_grabcut(open_studio, scene):
    frames, labels = scene
    studio = open_studio()
    studio.add_objects(1)
    ys, xs = np.nonzero(labels[0] == 1)
    box = [int(xs.min()) - 2, int(ys.min()) - 2, int(xs.max()) + 3, int(ys.max()) + 3]
    answer = studio.api(
        "POST", "/api/annotations/0/edit",
        json={"operations": [{"tool": "box", "object": 1, "box": box}]},
    )  # fmt: skip
    assert answer.status_code == 200
    mask = read_mask(studio.out / "annotations" / "00000.png") == 1
    truth = labels[0] == 1
    assert (mask & truth).sum() / (mask | truth).sum() > 0.85
    overlay = Image.open(io.BytesIO(studio.api("GET", "/api/overlay/0.png").content))
    assert overlay.mode == "RGBA" and overlay.size == (WIDTH, HEIGHT)
    assert np.array_equal(np.asarray(overlay)[..., 3] > 0, mask)


# --- propagation, correction, export ------------------------------------------------------------


def read_events(studio: Session, after: int = 0, until: str = "finished") -> list[dict]:
    """Server-sent events from `after` until one of type `until` (or an error/cancel)."""
    events = []
    with studio.client.stream(
        "GET", f"/api/events?after={after}", headers=studio.headers
    ) as stream:
        for line in stream.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1]["type"] in (until, "failed", "cancelled"):
                    break
    return events


def test_propagate_correct_and_export_equal_the_shown_command(
    open_studio, scene, segmenter, tmp_path
):
    frames, labels = scene
    studio = open_studio()
    assert studio.upload(0, labels[0]).status_code == 200
    seen = studio.api("GET", "/api/session").json()["events"]
    started = studio.api("POST", "/api/propagate")
    assert started.status_code == 202
    second = studio.api("POST", "/api/propagate")
    assert second.status_code == 409 and "already running" in second.json()["error"]
    refused = studio.api("POST", "/api/annotations/4/edit", json={"operations": [
        {"tool": "brush", "object": 1, "size": 3, "points": [[1, 1]]}]})  # fmt: skip
    assert refused.status_code == 409  # no edit under a running propagation
    events = read_events(studio, seen)
    frames_seen = [e["index"] for e in events if e["type"] == "frame"]
    assert events[0]["type"] == "start" and frames_seen == list(range(FRAMES))
    assert events[-1]["type"] == "finished", events[-1]
    results = studio.out / "results" / "clip"
    first = png_files(results)
    assert len(first) == FRAMES
    areas = studio.api("GET", "/api/areas").json()["area_pixels"]
    assert areas["1"][5] == int((read_mask(results / "00005.png") == 1).sum()) > 0

    # a correction on frame 7: a new blob of object 2 (an object may appear later, too)
    fix = studio.api("POST", "/api/annotations/7/edit", json={"operations": [
        {"tool": "brush", "object": 2, "size": 12, "points": [[20, 80], [40, 80]]}]})  # fmt: skip
    assert fix.status_code == 200 and fix.json()["stale_from"] == 7
    edited = read_mask(studio.out / "annotations" / "00007.png")
    before = read_mask(results / "00007.png")
    assert (edited != before).any() and ((edited == 2) | (before == edited)).all()
    stamps = {name: (results / name).stat().st_mtime_ns for name in first}
    studio.api("POST", "/api/propagate")
    assert studio.wait_idle()["outcome"] == "finished"
    second_results = png_files(results)
    for index in range(7):  # frames before the edit: not even rewritten
        name = f"{index:05d}.png"
        assert second_results[name] == first[name]
        assert (results / name).stat().st_mtime_ns == stamps[name]
    assert any(second_results[f"{i:05d}.png"] != first[f"{i:05d}.png"] for i in range(7, 12))

    # from the edit on: what a fresh run with both annotations writes, byte for byte
    fresh = tmp_path / "fresh"
    segmenter.write(
        clip_path(studio), fresh, formats=["davis"],
        masks={0: studio.out / "annotations" / "00000.png",
               7: studio.out / "annotations" / "00007.png"},
    )  # fmt: skip
    assert png_files(fresh / "clip") == second_results

    # export: more formats by the same writers, and the shown command writes the same labels
    studio.api("POST", "/api/export", json={"formats": ["youtube-vos", "matte"]})
    assert studio.wait_idle()["outcome"] == "finished"
    command = studio.api("GET", "/api/command").json()["command"]
    assert "--mask 0:" in command and "--mask 7:" in command and "-f youtube-vos" in command
    shell = tmp_path / "shell"
    done = run_command(command, shell)
    assert done.returncode == 0, done.stderr
    assert png_files(shell / "clip") == png_files(results) == second_results
    assert png_files(shell / "Annotations" / "clip") == png_files(
        studio.out / "results" / "Annotations" / "clip"
    )
    for object_id in (1, 2):
        assert png_files(shell / "matte" / f"object_{object_id}") == png_files(
            studio.out / "results" / "matte" / f"object_{object_id}"
        )
    assert no_partials(studio.out) == []


def clip_path(studio: Session) -> Path:
    return Path(studio.config.video)


def test_cancel_keeps_done_frames_and_the_next_run_resumes(open_studio, scene, segmenter):
    frames, labels = scene
    studio = open_studio()
    studio.upload(0, labels[0])
    seen = studio.api("GET", "/api/session").json()["events"]
    studio.api("POST", "/api/propagate")
    with studio.client.stream("GET", f"/api/events?after={seen}", headers=studio.headers) as s:
        for line in s.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:]).get("index") == 3:
                assert studio.api("POST", "/api/cancel").json() == {"cancelled": True}
                break
    status = studio.wait_idle()
    assert status["outcome"] == "cancelled"
    kept = png_files(studio.out / "results" / "clip")
    assert 4 <= len(kept) < FRAMES
    assert no_partials(studio.out) == []
    studio.api("POST", "/api/propagate")
    status = studio.wait_idle()
    assert status["outcome"] == "finished" and status["resumed"] == len(kept)
    finished = png_files(studio.out / "results" / "clip")
    assert all(finished[name] == data for name, data in kept.items())
    reference = studio.out.parent / "reference"
    segmenter.write(clip_path(studio), reference, formats=["davis"],
                    masks={0: studio.out / "annotations" / "00000.png"})  # fmt: skip
    assert png_files(reference / "clip") == finished


def test_reopening_the_folder_restores_everything(open_studio, scene, tmp_path):
    frames, labels = scene
    out = tmp_path / "again"
    studio = open_studio(out)
    studio.upload(0, labels[0])
    studio.api("PATCH", "/api/objects/2", json={"name": "ball", "colour": "#123456"})
    studio.api("POST", "/api/propagate")
    assert studio.wait_idle()["outcome"] == "finished"
    studio.api("POST", "/api/annotations/9/edit", json={"operations": [
        {"tool": "eraser", "size": 20, "points": [[64, 48]]}]})  # fmt: skip
    before = studio.api("GET", "/api/session").json()
    areas = studio.api("GET", "/api/areas").json()
    studio.close()

    again = open_studio(out)
    after = again.wait_ready()
    for key in ("objects", "annotations", "stale_from", "formats", "command"):
        assert after[key] == before[key], key
    assert after["annotations"] == [0, 9] and after["stale_from"] == 9
    assert again.api("GET", "/api/areas").json() == areas
    assert again.api("GET", "/api/results/4.png").status_code == 200


def test_a_studio_folder_of_another_video_is_refused(open_studio, tmp_path, scene):
    open_studio(tmp_path / "shared").close()
    other = make_video(tmp_path / "other.mp4", scene[0][:, :64], fps=25)
    runner = CliRunner()
    result = runner.invoke(
        cli_app, ["studio", str(other), "-o", str(tmp_path / "shared"), "--no-browser"]
    )
    assert result.exit_code != 0
    assert "another video" in str(result.exception)


# --- the command ---------------------------------------------------------------------------------


def test_studio_command_fails_in_one_line_before_serving(tmp_path, clip, monkeypatch):
    runner = CliRunner()
    missing = runner.invoke(cli_app, ["studio", str(tmp_path / "nope.mp4"), "--no-browser"])
    assert "no such file" in str(missing.exception)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        taken = runner.invoke(cli_app, ["studio", str(clip), "--port", str(port), "--no-browser"])
        assert "cannot listen" in str(taken.exception)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if the extra were not installed
    bare = runner.invoke(cli_app, ["studio", str(clip), "--no-browser"])
    assert "pip install 'seggpt-video[studio]'" in str(bare.exception)
    code = (
        "import sys; sys.modules['uvicorn'] = None; from seggpt_video.cli.app import main; "
        f"sys.argv = ['seggpt-video', 'studio', {str(clip)!r}]; main()"
    )
    real = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert real.returncode == 2
    assert real.stderr.strip().count("\n") == 0 and "seggpt-video[studio]" in real.stderr


def start_server(clip: Path, out: Path, *options: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "seggpt_video.cli", "studio", str(clip), "-o", str(out),
            "--no-browser", *MODEL, *options]  # fmt: skip
    server = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)  # fmt: skip
    url = server.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), server.stderr.read()
    return server, url


def test_ctrl_c_stops_the_server_within_seconds_mid_propagation(clip, scene, tmp_path):
    out = tmp_path / "served"
    server, url = start_server(clip, out)
    try:
        token = url.split("token=")[1]
        base = url.split("/?")[0]
        headers = {"X-Studio-Token": token}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            assert client.get("/api/session").status_code == 200
            assert client.put("/api/annotations/0.png", content=palette_png(scene[1][0]))
            assert client.post("/api/propagate").status_code == 202
            for _ in range(600):
                if client.get("/api/status").json().get("done", 0) >= 2:
                    break
                time.sleep(0.1)
        began = time.monotonic()
        server.send_signal(signal.SIGINT)
        server.wait(timeout=15)
        stopped = time.monotonic() - began
    finally:
        if server.poll() is None:
            server.kill()
    assert stopped < 8, f"took {stopped:.1f} s"
    assert "studio stopped" in server.stderr.read()
    assert no_partials(out) == []
    saved = json.loads((out / "studio.json").read_text())
    assert saved["annotations"] == [0]

"""The studio in a real browser: headless Chromium driven by Selenium 4 against the real server.

On frame 0 a box (GrabCut) makes the first mask; propagate; scrub with the keys and the slider;
on a later frame the brush corrects it; propagate again (frames before the edit untouched byte
for byte); export; the page's command (#command), run as a shell would, writes the same label
PNGs. Skips with the reason when Chromium or its driver is missing (CI installs Debian's).
The helpers (serve, chrome, Page) are also used by benchmarks/make_studio_screenshots.py.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the studio extra is not installed")
pytest.importorskip("cv2", reason="the studio extra is not installed")
pytest.importorskip("uvicorn", reason="the studio extra is not installed")
pytest.importorskip("selenium", reason="the browser test needs selenium (pip install selenium)")

import uvicorn  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import TimeoutException, WebDriverException  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from seggpt_video.studio.server import StudioConfig, create_app  # noqa: E402

FRAMES, HEIGHT, WIDTH = 12, 144, 192
MODEL = ["--model", "seggpt-tiny", "--device", "cpu", "--dtype", "fp32"]
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")
OUTCOMES = ("finished", "failed", "cancelled")
DRIVERS = ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")


# --- helpers (shared with benchmarks/make_studio_screenshots.py) --------------------------------


def find_chrome() -> tuple[str | None, str | None, str]:
    """(browser, driver, reason): Debian's paths first, then PATH; reason says what is missing."""
    names = ("chromium", "chromium-browser", "google-chrome")
    found = [p for p in BROWSERS if Path(p).exists()] + [shutil.which(n) for n in names]
    browser = next((p for p in found if p), None)
    driver = next((p for p in DRIVERS if Path(p).exists()), None) or shutil.which("chromedriver")
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    reason = ""
    if missing:
        reason = f"no {' and no '.join(missing)} (Debian: apt-get install chromium chromium-driver)"
    return browser, driver, reason


def chrome(width: int = 1400, height: int = 900) -> webdriver.Chrome:
    """Headless Chromium of `width` x `height` CSS pixels; pytest.skip if there is none."""
    browser, driver, reason = find_chrome()
    if reason:
        pytest.skip(reason)
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     f"--window-size={width},{height}", "--force-device-scale-factor=1",
                     "--disable-dev-shm-usage"):  # fmt: skip
        options.add_argument(argument)
    try:
        return webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    except WebDriverException as error:
        pytest.skip(f"chromium does not start: {str(error).splitlines()[0]}")


@contextlib.contextmanager
def serve(config: StudioConfig) -> Iterator[str]:
    """The real studio (uvicorn, as `seggpt-video studio` runs it) in a thread; yields its URL."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.05)
        else:
            raise AssertionError("the studio did not start")
        yield f"http://127.0.0.1:{port}/?token={config.token}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        listener.close()


class Page:
    """The studio's page in the driver: waits on what the page shows, draws in video pixels."""

    def __init__(self, driver: webdriver.Chrome, url: str, timeout: float = 60) -> None:
        self.driver, self.timeout = driver, timeout
        driver.get(url)
        self.wait(lambda d: self.text("status") == "ready" and self.shown() == 0, "first frame")
        # every text #status shows, in order: a run is seen to start and end however fast it is
        driver.execute_script(
            "window.statuses = [];"
            "new MutationObserver(() => window.statuses.push(document.getElementById('status')"
            ".textContent)).observe(document.getElementById('status'),"
            " {childList: true, characterData: true, subtree: true});"
        )

    def wait(self, condition, what: str, timeout: float | None = None):
        try:
            return WebDriverWait(self.driver, timeout or self.timeout, 0.05).until(condition)
        except TimeoutException:
            raise AssertionError(
                f"page: no {what} (status {self.text('status')!r}, "
                f"message {self.text('message')!r}, progress {self.text('progress-text')!r})"
            ) from None

    def element(self, element_id: str):
        return self.driver.find_element(By.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.element(element_id).text

    def shown(self) -> int:
        """The frame on the canvas (-1 while none)."""
        return self.driver.execute_script("return state.shown;")

    def show(self, frame: int) -> None:
        """Types the frame number and Enter, as a user would; waits until it is drawn."""
        box = self.element("frame-number")
        box.clear()
        box.send_keys(str(frame), Keys.ENTER)
        self.wait(lambda d: self.shown() == frame, f"frame {frame} drawn")

    def drag(self, points: list[tuple[float, float]]) -> None:
        """Presses at the first point (video pixels x, y), moves through the rest, releases."""
        left, top, scale = self.driver.execute_script(
            "const r = document.getElementById('view').getBoundingClientRect();"
            "return [r.left, r.top, r.width / state.video.width];"
        )
        actions = ActionBuilder(self.driver, duration=20)
        pointer = actions.pointer_action
        for number, (x, y) in enumerate(points):
            pointer.move_to_location(int(left + x * scale), int(top + y * scale))
            if number == 0:
                pointer.pointer_down()
        pointer.pointer_up()
        actions.perform()

    def run(self, button: str, what: str) -> str:
        """Clicks propagate or export; waits for #status to go through running to finished."""
        self.driver.execute_script("window.statuses = [];")
        self.element(button).click()

        def outcome(driver) -> str | None:
            seen = driver.execute_script("return state.running ? [] : window.statuses;")
            if "propagating…" not in seen:
                return None
            ends = [s for s in seen[seen.index("propagating…") :] if s in OUTCOMES]
            return ends[-1] if ends else None

        assert self.wait(outcome, f"end of {what}", timeout=120) == "finished", self.text("message")
        return self.text("progress-text")

    def assert_outcome_stays(self, outcome: str = "finished") -> None:
        """The page reloads the session after a run: the outcome must stay in #status."""
        time.sleep(1.0)
        assert self.text("status") == outcome


def box_of(mask: np.ndarray, margin: int) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the True pixels of a (H, W) mask, `margin` pixels wider."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    return (max(0, xs.min() - margin), max(0, ys.min() - margin),
            min(width - 1, xs.max() + margin), min(height - 1, ys.max() + margin))  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


# --- the test -----------------------------------------------------------------------------------


def png_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def run_shown_command(command: str, output: Path) -> subprocess.CompletedProcess:
    """The page's `seggpt-video run ...`, run as a shell would, into `output`."""
    words = shlex.split(command)
    assert words[:2] == ["seggpt-video", "run"], command
    words[words.index("-o") + 1] = str(output)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "seggpt_video.cli", *words[1:]]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.browser
def test_box_propagate_scrub_brush_export_in_chromium(tmp_path):
    from synthetic_media import make_video, moving_shapes

    import seggpt_video
    from seggpt_video.io.masks import read_mask

    driver = chrome()  # skips first when there is no browser: nothing else is built for nothing
    try:
        frames, labels = moving_shapes(FRAMES, HEIGHT, WIDTH, num_objects=1, seed=3)
        clip = make_video(tmp_path / "clip.mp4", frames, fps=25)
        out = tmp_path / "out"
        segmenter = seggpt_video.load("seggpt-tiny", device="cpu", dtype="fp32", lazy=True)
        config = StudioConfig(video=clip, out=out, segmenter=segmenter, model_options=MODEL[2:])
        with serve(config) as url:
            page = Page(driver, url)
            assert page.text("frame-total") == f"/ {FRAMES - 1}"

            # frame 0: a new object, a box around it; GrabCut makes its mask
            page.element("add-object").click()
            page.wait(lambda d: d.find_elements(By.CSS_SELECTOR, "#objects li"), "object")
            x0, y0, x1, y1 = box_of(labels[0] == 1, margin=6)
            page.drag([(x0, y0), ((x0 + x1) / 2, (y0 + y1) / 2), (x1, y1)])
            page.wait(lambda d: page.text("frame-kind") == "annotated", "mask on frame 0")
            first = read_mask(out / "annotations" / "00000.png")
            truth = labels[0] == 1
            iou = ((first == 1) & truth).sum() / ((first == 1) | truth).sum()
            assert iou > 0.7, f"GrabCut's mask: IoU {iou:.2f} with the object"
            assert set(np.unique(first)) == {0, 1}

            # propagate: the page shows the progress and, at the end, every frame done
            done = page.run("propagate", "propagation")
            page.assert_outcome_stays()
            assert done.startswith(f"done: {FRAMES} frames"), done
            results = out / "results" / "clip"
            before = png_files(results)
            assert len(before) == FRAMES

            # scrub (following the run, the page shows its last frame): the frame number, keys
            # on the canvas, the slider
            page.show(0)
            page.element("view").click()  # focus (a click without a drag draws nothing)
            page.element("view").send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
            page.wait(lambda d: page.shown() == 2, "frame 2 after two right arrows")
            page.element("view").send_keys(Keys.ARROW_LEFT)
            page.wait(lambda d: page.shown() == 1, "frame 1 after a left arrow")
            assert page.text("frame-kind") == "propagated"
            slider = page.element("slider")
            slider.send_keys(Keys.END)  # a range input's own key: the last frame
            page.wait(lambda d: page.shown() == FRAMES - 1, "the last frame by the slider")
            assert page.element("frame-number").get_attribute("value") == str(FRAMES - 1)
            assert (out / "annotations" / "00000.png").exists()  # scrubbing wrote nothing else
            assert sorted(p.name for p in (out / "annotations").glob("*.png")) == ["00000.png"]

            # frame 7: the brush paints a correction (a stroke of the object off its mask)
            fix = 7
            page.show(fix)
            page.element("tool-brush").click()
            size = page.element("size")
            page.driver.execute_script(
                "arguments[0].value = 10; arguments[0].dispatchEvent(new Event('input'));", size
            )
            assert page.text("size-value") == "10"
            propagated = read_mask(results / f"{fix:05d}.png")
            row = int(np.argmin((propagated == 1).sum(axis=1)))  # a row with least of the object
            page.drag([(20, row), (60, row), (100, row)])
            page.wait(lambda d: page.text("frame-kind") == "annotated", f"annotation on {fix}")
            edited = read_mask(out / "annotations" / f"{fix:05d}.png")
            painted = (edited == 1) & (propagated != 1)
            assert painted.sum() > 200, "the brush stroke did not reach the annotation"
            assert ((edited == propagated) | (edited == 1)).all()  # the brush only adds
            stamps = {name: (results / name).stat().st_mtime_ns for name in before}

            done = page.run("propagate", "propagation after the correction")
            assert done.startswith(f"done: {FRAMES} frames, {fix} read back"), done
            after = png_files(results)
            for index in range(fix):  # before the edit: the same bytes, not even rewritten
                name = f"{index:05d}.png"
                assert after[name] == before[name], name
                assert (results / name).stat().st_mtime_ns == stamps[name], name
            assert after[f"{fix:05d}.png"] != before[f"{fix:05d}.png"]
            assert (read_mask(results / f"{fix:05d}.png") == edited).all()

            # export with a second format; the page shows the equivalent command
            page.driver.find_element(By.CSS_SELECTOR, "#formats input[value=youtube-vos]").click()
            page.run("export", "export")
            command = page.text("command")
            assert f"--mask {fix}:" in command and "-f youtube-vos" in command, command
            exported = png_files(results)
            assert exported == after
        shell = tmp_path / "shell"
        ran = run_shown_command(command, shell)
        assert ran.returncode == 0, ran.stderr
        assert png_files(shell / "clip") == exported
        assert png_files(shell / "Annotations" / "clip") == png_files(
            out / "results" / "Annotations" / "clip"
        )
    finally:
        driver.quit()

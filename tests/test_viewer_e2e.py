"""The viewer in a real browser: streamlit server + headless Chromium (selenium) on a real run.

Skips only when chromium or chromedriver is not installed (`make browser` installs both).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from .conftest import REPO
from .viewer_support import SCENE

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file()
                                                else None)
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
               "--enable-unsafe-swiftshader", "--use-angle=swiftshader",  # software WebGL for plotly's 3D scene
               "--window-size=1500,2000"]
SCREENSHOT = REPO / "outputs" / "viewer_screenshot.png"
PAGE_TIMEOUT_S = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit not healthy after {timeout:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture
def viewer_server(viewer_run, tmp_path):
    port = free_port()
    log = tmp_path / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", "imc/viewer/app.py", "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none", "--", "--run", str(viewer_run.run), "--labels", str(viewer_run.labels)]
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, env=dict(os.environ))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                    reason="chromium/chromedriver not installed (`make browser`, or apt-get install chromium "
                           "chromium-driver)")
def test_viewer_renders_in_chromium(viewer_server, tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    options = Options()
    options.binary_location = CHROMIUM
    for arg in CHROME_ARGS + [f"--user-data-dir={tmp_path / 'chrome-profile'}"]:
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(viewer_server)
        wait = WebDriverWait(driver, PAGE_TIMEOUT_S, poll_frequency=0.5)
        # the last section rendered: the page script ran to its end
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".js-plotly-plot"))
        wait.until(lambda d: d.execute_script(
            "const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
            "return imgs.length >= 2 && imgs.every(i => i.complete && i.naturalWidth > 0);"))
        wait.until(lambda d: d.execute_script(
            "const p = document.querySelector('.js-plotly-plot');"
            "return p && p.data && p.data.length >= 2 && p.querySelector('canvas') !== null;"))
        assert driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]'), "no scene table"
        assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]'), "traceback on the page"
        body = driver.find_element(By.TAG_NAME, "body").text
        assert "Keypoints" in body and "Matches" in body and "3D model" in body and "overall mAA" in body
        assert SCENE in driver.page_source  # the scene selector's value
        assert "verified inliers" in body
        traces = driver.execute_script(
            "return document.querySelector('.js-plotly-plot').data.map(t => [t.type, t.name || '']);")
        assert {t for t, _ in traces} == {"scatter3d"}
        assert any(name.startswith("ground truth") for _, name in traces), traces  # --labels: GT overlaid
        assert not driver.execute_script(  # plotly's message when WebGL is unavailable
            "return document.querySelector('.js-plotly-plot').innerText.includes('WebGL is not supported');")
        height = driver.execute_script(  # the page scrolls inside Streamlit's main container
            "const m = document.querySelector('[data-testid=\"stMain\"]') || document.body; return m.scrollHeight;")
        driver.set_window_size(1500, min(int(height) + 150, 6000))
        time.sleep(1.5)  # relayout and let the WebGL scene paint before the screenshot
        shot = tmp_path / "viewer_screenshot.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    finally:
        driver.quit()
    try:
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, SCREENSHOT)
    except OSError:  # read-only checkout: the copy in tmp_path is enough
        pass

"""``seemore serve`` in a real browser: Debian's headless Chromium, driven by Selenium.

CI installs ``chromium`` and ``chromium-driver`` and sets ``SEEMORE_BROWSER_TESTS=required``,
so a missing browser fails there; elsewhere it skips. ``SEEMORE_SCREENSHOT=docs/serve.png``
keeps the page's screenshot (``scripts/serve_screenshot.sh``); by default it goes to a
temporary folder, where the test still checks that it was written.
"""

import os
import shutil
import time
from pathlib import Path

import pytest

from seemore_sr.cli import main
from seemore_sr.models.hub import load_model
from seemore_sr.serve.jobs import Jobs

from .test_serve import Gate, GatedJobs, serving_jobs

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
PHOTO = Path(__file__).resolve().parents[1] / "src/seemore_sr/assets/sample.png"


@pytest.fixture
def browser(tmp_path):
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        if os.environ.get("SEEMORE_BROWSER_TESTS") == "required":
            pytest.fail(
                f"the browser test needs {CHROMIUM} and {CHROMEDRIVER} (apt-get install chromium chromium-driver)"
            )
        pytest.skip("Debian's chromium and chromium-driver are not installed")
    os.environ["SE_OFFLINE"] = "true"  # Selenium must not look for drivers online
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in [
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1280,1200",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]:
        options.add_argument(flag)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads)})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def until(condition, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_page_upscales_a_photo_like_the_cli(browser, tmp_path):
    from selenium.webdriver.common.by import By

    from seemore_sr import bundled_weights

    served = [m for m in ("seemore-tiny-x4", "seemore-tiny-x4-real") if m in bundled_weights()]
    jobs = Jobs({m: load_model(m) for m in served}, device="cpu", root=tmp_path / "srv")
    with serving_jobs(jobs) as base:
        browser.get(base + "/")
        until(lambda: browser.find_elements(By.CSS_SELECTOR, "#model option"), 20, "the models")
        assert browser.find_element(By.ID, "denoise-controls").get_attribute("hidden") is not None  # clean: no slider
        browser.find_element(By.ID, "files").send_keys(str(PHOTO))
        until(lambda: browser.find_elements(By.CSS_SELECTOR, ".job.done"), 120, "the result")
        card = browser.find_element(By.CSS_SELECTOR, ".job.done")
        until(
            lambda: browser.execute_script(
                "return [...arguments[0].querySelectorAll('img')].every(i => i.complete && i.naturalWidth > 0)", card
            ),
            30,
            "the before / after images",
        )
        facts = card.find_element(By.CSS_SELECTOR, ".facts").text
        assert "160 × 128" in facts and "640 × 512" in facts and "rank" in facts, facts
        assert (
            browser.execute_script("return arguments[0].naturalWidth", card.find_element(By.CSS_SELECTOR, ".after"))
            == 640
        )

        if "seemore-tiny-x4-real" in served:  # the real weights: the denoise slider, auto by default
            browser.execute_script(
                "const m = document.querySelector('#model'); m.value = 'seemore-tiny-x4-real'; m.onchange()"
            )
            assert browser.find_element(By.ID, "denoise-controls").get_attribute("hidden") is None
            browser.find_element(By.ID, "files").send_keys(str(PHOTO))
            until(lambda: len(browser.find_elements(By.CSS_SELECTOR, ".job.done")) == 2, 120, "the real result")
            real = browser.find_elements(By.CSS_SELECTOR, ".job.done")[0]  # the newest card is first
            assert "Denoise" in real.find_element(By.CSS_SELECTOR, ".facts").text
            browser.execute_script(
                "const m = document.querySelector('#model'); m.value = 'seemore-tiny-x4'; m.onchange()"
            )

        shot = Path(os.environ.get("SEEMORE_SCREENSHOT") or tmp_path / "serve.png")
        browser.execute_script("document.querySelectorAll('.split').forEach(s => { s.value = 55; s.oninput(); })")
        assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000

        card.find_element(By.CSS_SELECTOR, ".download").click()
        got = until(
            lambda: [p for p in browser.downloads.iterdir() if not p.name.endswith(".crdownload")], 30, "the download"
        )
        assert [p.name for p in got] == ["sample.png"]  # the name the CLI gives
        out = tmp_path / "cli"
        assert main(["upscale", str(PHOTO), "-o", str(out), "--no-progress"]) == 0
        assert got[0].read_bytes() == (out / "sample.png").read_bytes()

        # before is bicubic by default, and labelled on the image; the pixels are one choice away
        assert card.find_element(By.CSS_SELECTOR, ".tag.left").text == "before: bicubic"
        assert card.find_element(By.CSS_SELECTOR, ".before").get_attribute("src").endswith("/preview/bicubic")
        browser.execute_script("const s = arguments[0]; s.value = 'input'; s.onchange()", card.find_element(
            By.CSS_SELECTOR, ".before-kind"))  # fmt: skip
        assert card.find_element(By.CSS_SELECTOR, ".tag.left").text == "before: pixels enlarged"
        # fit: inside the viewport; 2:1 opens at the centre, not the top-left corner
        fit = (
            "const v = arguments[0].querySelector('.viewport');"
            "return [v.scrollHeight <= v.clientHeight + 1, v.scrollWidth <= v.clientWidth + 1]"
        )
        assert browser.execute_script(fit, card) == [True, True]
        browser.execute_script("const z = arguments[0].querySelector('.zoom'); z.value = '2'; z.onchange()", card)
        left, room = browser.execute_script(
            "const v = arguments[0].querySelector('.viewport'); return [v.scrollLeft, v.scrollWidth - v.clientWidth]",
            card,
        )
        assert room > 0 and abs(left - room / 2) <= 2

        bad = tmp_path / "notes.png"  # not an image: the page says so, and the server goes on
        bad.write_text("not an image")
        browser.find_element(By.ID, "files").send_keys(str(bad))
        failed = until(lambda: browser.find_elements(By.CSS_SELECTOR, ".job.failed"), 30, "the error")
        assert "not an image" in failed[0].text, failed[0].text
        assert len(browser.find_elements(By.CSS_SELECTOR, ".job.done")) == len(served)
    assert not jobs.root.exists()


@pytest.mark.slow
def test_leaving_the_page_cancels_its_job(browser, tmp_path):
    from selenium.webdriver.common.by import By

    jobs = GatedJobs({"seemore-tiny-x4": load_model("seemore-tiny-x4")}, device="cpu", root=tmp_path / "srv")
    jobs.gate = Gate()
    with serving_jobs(jobs) as base:
        browser.get(base + "/")
        until(lambda: browser.find_elements(By.CSS_SELECTOR, "#model option"), 20, "the models")
        browser.find_element(By.ID, "files").send_keys(str(PHOTO))
        assert jobs.gate.reached.wait(60)  # running, held at its first step
        (job,) = jobs.jobs.values()
        browser.get("about:blank")  # the tab leaves: its beacon cancels the job (abandon_s is 30 s)
        until(job.cancel.is_set, 10, "the cancel")
        jobs.gate.open.set()
        until(lambda: job.state == "cancelled", 30, "the job to stop")
        assert not job.folder.exists()


def test_screenshot_script_points_at_docs():
    script = Path(__file__).resolve().parents[1] / "scripts/serve_screenshot.sh"
    assert "SEEMORE_SCREENSHOT=docs/serve.png" in script.read_text()
    assert shutil.which("bash")

"""The match review in a real browser (Debian's chromium through Selenium), on the small demo's
outputs: ten queries answered by keyboard, Apply, and the next ``infer.py`` finds the confirmed
and the new individuals."""

import io
import os
import shutil
import urllib.request

import numpy as np
import pandas as pd
import pytest
from test_review_app import free_port, serve

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture
def browser():
    if not (CHROMIUM and DRIVER):
        if os.environ.get("CI"):
            pytest.fail("chromium and chromium-driver are missing: .ci/run installs them")
        pytest.skip("apt-get install chromium chromium-driver to run the browser test")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)  # no Selenium Manager: no download
    yield driver
    driver.quit()


def infer(demo, embedder, catalog, out):
    """``infer.py`` on the demo's test photos (in this process: TensorFlow is loaded once)."""
    from pipeline.identify import InferConfig, run

    run(InferConfig(detector=str(demo / "detector"), embedder=str(embedder), catalog=str(catalog), out=str(out.parent),
                    images=str(demo / "data" / "test_images")), progress=False)
    m = pd.read_csv(out.parent / "matches.csv", dtype=str)
    return m[m["rank"] == "1"].set_index("image")["individual_id"], pd.read_csv(out, dtype=str).set_index("image")


def collapsed(catalog) -> bool:
    e = catalog.embeddings
    return float(np.median(e @ e.T)) > 0.9999


def wait_ready(driver, before: str | None = None):
    from selenium.webdriver.support.ui import WebDriverWait

    def ready(d):
        text = d.find_element("id", "current-image").text
        return d.find_element("tag name", "body").get_attribute("data-state") == "ready" and text and text != before

    WebDriverWait(driver, 60).until(ready)
    return driver.find_element("id", "current-image").text


def press(driver, key: str) -> str:
    from selenium.webdriver.common.action_chains import ActionChains

    before = driver.find_element("id", "current-image").text
    ActionChains(driver).send_keys(key).perform()
    return wait_ready(driver, before)


def test_review_by_keyboard_then_apply_grows_the_catalog(small_demo, browser, tmp_path):
    from selenium.webdriver.support.ui import Select

    from pipeline.catalog import export

    demo = small_demo[0]
    embedder, catalog = demo / "embedder", tmp_path / "catalog.npz"
    if collapsed(export(str(embedder), str(demo / "crops"), str(catalog))):
        # The small demo's embedder can map every crop to one point (cosines 0.99999): matching
        # would be ties. Its untrained baseline embedder (also a demo output) keeps photos apart.
        embedder = demo / "baselines" / "untrained"
        assert not collapsed(export(str(embedder), str(demo / "crops"), str(catalog)))
    before, _ = infer(demo, embedder, catalog, tmp_path / "run1" / "submission.csv")
    port = free_port()
    server = serve(["--matches", str(tmp_path / "run1" / "matches.csv"), "--catalog", str(catalog),
                    "--catalog-images", str(demo / "data" / "train_images"), "--db", str(tmp_path / "review.sqlite")],
                   port)
    try:
        browser.get(f"http://127.0.0.1:{port}/?reviewer=tester")
        shown = [wait_ready(browser)]
        assert len(browser.find_elements("css selector", ".cand")) == 5
        browser.find_element("tag name", "body").send_keys("m")
        assert len(browser.find_elements("css selector", ".cand")) == 10  # more on demand
        # ten answers: accept, new, not identifiable; a skip, and an undo that brings a photo back
        keys = ["1", "n", "2", "x", "s", "n", "1", "n", "u", "n", "1", "x", "n"]
        for i, k in enumerate(keys):
            if i == len(keys) - 1:  # the last new individual: a species other than the predicted one
                pick = Select(browser.find_element("id", "new-species"))
                other = next(o.get_attribute("value") for o in pick.options
                             if o.get_attribute("value") != pick.first_selected_option.get_attribute("value"))
                pick.select_by_value(other)
            shown.append(press(browser, k))
        if os.environ.get("REVIEW_SCREENSHOT"):
            browser.save_screenshot(os.environ["REVIEW_SCREENSHOT"])
        assert shown[9] == shown[7]  # undo showed the photo answered by the 8th key again
        browser.find_element("id", "apply").click()
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(browser, 240).until(lambda d: "applied:" in d.find_element("id", "message").text)
        assert "applied: 8 photo(s) enrolled" in browser.find_element("id", "message").text  # not the X ones
        csv = urllib.request.urlopen(f"http://127.0.0.1:{port}/decisions.csv").read().decode()
    finally:
        server.kill()
        server.wait()
    dec = pd.read_csv(io.StringIO(csv), dtype=str, keep_default_na=False)
    answered = [s for s, k in zip(shown, keys, strict=False) if k not in "smu"]
    assert len(dec) == 10 and set(dec["image"]) == set(answered) and shown[4] not in answered
    assert dec["decision"].value_counts().to_dict() == {"new": 4, "accept": 4, "unidentifiable": 2}
    assert dec.set_index("image").loc[shown[12], "species"] == other
    assert (tmp_path / "decisions.csv").read_text() == csv  # Apply exported the same file
    after, sub = infer(demo, embedder, catalog, tmp_path / "run2" / "submission.csv")
    confirmed = dec[dec["decision"] != "unidentifiable"]
    assert (after[confirmed["image"]].to_numpy() == confirmed["individual_id"].to_numpy()).all()  # best match
    assert all(i in sub.loc[im, "predictions"].split() for im, i in confirmed[["image", "individual_id"]].values)
    new = confirmed[confirmed["decision"] == "new"]
    assert not before[new["image"]].isin(new["individual_id"]).any()  # unknown before the review

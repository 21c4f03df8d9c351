"""The Gradio demo in headless Chromium: generate in every tab, see the outputs, see errors as messages.
Screenshots go to test-artifacts/."""
import os
import shutil
import socket
import types

import pytest

from specgen_apps.demo import launch
from modalities.audio.features import save_audio
from modalities.rap.beats import beat
from modalities.rap.vocab import RapVocab
from modalities.speech.vocab import SpeechVocab
from tiny import (perturbed, random_heads, tiny_image_parts, tiny_model, tiny_speech_parts, tiny_tokenizer)

LYRICS = "we walk the road today\nand sing the night away"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "test-artifacts")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    tok = tiny_tokenizer(vocab=300)
    target = tiny_model("llama", vocab=len(tok), context=256, layers=3)
    for name, model in {"target": target, "pard": perturbed(target, 0.3, pard_token=tok.mask_token_id)}.items():
        model.save_pretrained(root / name)
        tok.save_pretrained(root / name)
    random_heads(target, "medusa").save(str(root / "medusa"))
    for kind in ("speech", "image", "rap"):
        (root / kind).mkdir()
    tiny_speech_parts(root / "speech", SpeechVocab, ["The quick brown fox jumps over the lazy dog."])
    tiny_image_parts(root / "image")
    tiny_speech_parts(root / "rap", RapVocab, LYRICS.splitlines(), context=1024)
    save_audio(str(root / "beat.wav"), beat(96, 3, seed=2)[0], 16000)
    port = free_port()
    args = types.SimpleNamespace(host="127.0.0.1", port=port, text_model=str(root / "target"),
                                 text_draft=str(root / "pard"), text_heads=[str(root / "medusa")],
                                 speech_model=str(root / "speech"), image_model=str(root / "image"),
                                 rap_model=str(root / "rap"))
    app = launch(args, block=False)
    yield f"http://127.0.0.1:{port}/", root
    app.close()


@pytest.fixture(scope="module")
def page(url):
    address, _ = url
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Debian chromium is missing: bash scripts/setup.sh installs it"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.goto(address)
        yield page
        browser.close()


def test_text_tab_shows_both_outputs_and_the_speedup(page):
    os.makedirs(ARTIFACTS, exist_ok=True)
    page.fill("#text-prompt textarea", "def fib(n):")
    page.click("#text-generate")
    page.wait_for_function("document.querySelector('#text-stats').innerText.includes('speedup')", timeout=60_000)
    spec = page.input_value("#text-spec textarea")
    ar = page.input_value("#text-ar textarea")
    assert spec and spec == ar  # greedy: identical text, different time
    stats = page.inner_text("#text-stats")
    assert "tokens/s" in stats and "mean accepted" in stats
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-text.png"), full_page=True)


def test_text_tab_reports_bad_input_in_the_page(page):
    page.fill("#text-prompt textarea", "")
    page.click("#text-generate")
    page.wait_for_function("document.querySelector('#text-stats').innerText.includes('prompt is empty')",
                           timeout=30_000)
    assert "Traceback" not in page.content()
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-text-error.png"), full_page=True)


def wait_for_stats(page, kind):
    page.wait_for_function(f"document.querySelector('#{kind}-stats').innerText.includes('speedup')",
                           timeout=120_000)
    return page.inner_text(f"#{kind}-stats")


def test_speech_tab_plays_both_versions(page):
    page.get_by_role("tab", name="Speech").click()
    page.click("#speech-generate")
    stats = wait_for_stats(page, "speech")
    assert "real-time factor" in stats
    assert page.locator("#speech-spec audio, #speech-spec [data-testid='waveform-controls']").count() >= 1
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-speech.png"), full_page=True)


def test_image_tab_shows_both_images(page):
    page.get_by_role("tab", name="Image").click()
    page.click("#image-generate")
    wait_for_stats(page, "image")
    assert page.locator("#image-spec img").count() == 1 and page.locator("#image-ar img").count() == 1
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-image.png"), full_page=True)


def test_rap_tab_needs_a_beat_then_mixes(page, url):
    _, root = url
    page.get_by_role("tab", name="Rap").click()
    page.click("#rap-generate")
    page.wait_for_function("document.querySelector('#rap-stats').innerText.includes('no beat')", timeout=30_000)
    page.set_input_files("#rap-beat input[type=file]", str(root / "beat.wav"))
    page.wait_for_timeout(1500)
    page.click("#rap-generate")
    stats = wait_for_stats(page, "rap")
    assert "BPM" in stats
    page.screenshot(path=os.path.join(ARTIFACTS, "demo-rap.png"), full_page=True)

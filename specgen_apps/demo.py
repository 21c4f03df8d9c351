"""One Gradio app, a tab per modality: the speculative method and `ar` side by side on the same input, with
tokens/s, speedup and mean accepted length. Models load on first use.

    specgen demo [--port 7860]          or          python specgen_apps/demo.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "zoo")
# the default text target is Gemma 3 270M (a short name: converted on first use) with its PARD draft; the small
# text-30m family with its heads: --text-model models/zoo/text-30m --text-draft models/zoo/text-pard-5m
# --text-heads models/zoo/text-30m-heads/{medusa,hydra,koala,redrafter}
TEXT_DEFAULTS = {"model": "gemma-3-270m", "draft": os.path.join(ZOO, "text-gemma-pard"), "heads": []}
MODELS = {"speech": os.path.join(ZOO, "speech-tts"), "image": os.path.join(ZOO, "image-scenes"),
          "rap": os.path.join(ZOO, "rap")}


class Lazy:
    """A pipeline loaded on first use from a model folder; a clear message while the folder does not exist."""

    def __init__(self, kind: str, path: str, loader):
        self.kind, self.path, self.loader, self._obj = kind, path, loader, None

    @property
    def available(self) -> bool:
        return os.path.isdir(self.path)

    def get(self):
        if self._obj is None:
            if not self.available:
                raise ValueError(f"no {self.kind} model at {self.path} yet: train it (see the README) or start the "
                                 f"demo with --{self.kind}-model PATH")
            self._obj = self.loader(self.path)
        return self._obj


class TextDemo:
    """The text tab's models: one target, shared by a pipeline per draft (the PARD draft, then each heads folder)."""

    def __init__(self, model: str, draft: str | None, heads: list[str], drafting=None):
        self.model, self.draft, self.drafting = model, draft, drafting
        self.heads = [h for h in heads if os.path.isfile(os.path.join(h, "heads.json"))]  # those trained so far
        self._pipes = None

    @property
    def methods(self) -> list[str]:
        kinds = [json.load(open(os.path.join(h, "heads.json")))["kind"] for h in self.heads]
        return (["pard", "draft_model"] if self.draft else []) + kinds + ["ngram"]

    def pipelines(self) -> dict:
        """method -> pipeline, loaded on first use; every pipeline shares the one target model."""
        if self._pipes is None:
            from modalities.text import TextPipeline
            from specgen.drafters import load_heads

            base = TextPipeline.from_pretrained(self.model, draft=self.draft, drafting=self.drafting)
            pipes = {m: base for m in ("ar", "ngram", "pard", "draft_model")}
            for h in self.heads:
                heads = load_heads(h, base.target.model, narrow=True)
                pipes[heads.kind] = TextPipeline(base.target.model, base.tokenizer, heads, drafting=self.drafting)
            self._pipes = pipes
        return self._pipes

    def run(self, prompt: str, method: str, temperature: float, k: int, max_new: int, progress=None):
        pipes = self.pipelines()
        if method not in pipes:
            raise ValueError(f"method {method!r} has no model here: choose one of {sorted(pipes)}")
        settings = dict(max_new_tokens=int(max_new), temperature=float(temperature), seed=0)
        if progress:
            progress(0.1, desc=f"{method}")
        spec = pipes[method].generate(prompt, method=method, num_draft_tokens=int(k), **settings)
        if progress:
            progress(0.55, desc="ar")
        ar = pipes["ar"].generate(prompt, method="ar", **settings)
        return spec, ar


def stats_table(spec, ar, method: str, extra: list[tuple[str, str, str]] = ()) -> str:
    """Markdown: the speculative run's token-stage figures beside ar's (spec and ar are Stats)."""
    speed = spec.tokens_per_s / ar.tokens_per_s if ar.tokens_per_s else float("nan")
    rows = [("", method, "ar"), ("---", "---", "---"),
            ("tokens/s", f"{spec.tokens_per_s:.1f}", f"{ar.tokens_per_s:.1f}"),
            ("speedup over ar", f"**{speed:.2f}x**", "1.00x"),
            ("mean accepted per target forward", f"{spec.mean_accepted:.2f}", f"{ar.mean_accepted:.2f}"),
            ("new tokens", str(spec.new_tokens), str(ar.new_tokens)),
            ("target forwards", str(spec.target_forwards), str(ar.target_forwards)),
            ("lossless", "yes" if spec.lossless else f"no ({spec.acceptance})", "yes"), *extra]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def problem(e: Exception) -> str:
    return f"**Could not generate:** {e}"


def build_app(text: TextDemo, models: dict[str, Lazy], drafting=None):
    """The app: the text tab, then a tab per media model; `drafting` (a `DraftConfig`) for every speculative
    method."""
    import gradio as gr

    with gr.Blocks(title="specgen") as app:
        gr.Markdown("# specgen: speculative generation\nThe speculative method and plain autoregressive decoding "
                    "(`ar`) on the same input. Greedy output is identical; the time is not.")
        with gr.Tab("Text"):
            with gr.Row():
                prompt = gr.Textbox(label="Prompt", value="def fibonacci(n):", lines=4, elem_id="text-prompt")
                with gr.Column():
                    methods = text.methods
                    method = gr.Dropdown(methods, value=methods[0], label="Method", elem_id="text-method")
                    temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="Temperature (0 = greedy)")
                    k = gr.Slider(1, 16, value=8, step=1, label="Draft tokens per round (K)")
                    max_new = gr.Slider(8, 256, value=96, step=8, label="New tokens")
            go = gr.Button("Generate", variant="primary", elem_id="text-generate")
            with gr.Row():
                spec_out = gr.Textbox(label="Speculative", lines=10, elem_id="text-spec")
                ar_out = gr.Textbox(label="ar", lines=10, elem_id="text-ar")
            stats = gr.Markdown(elem_id="text-stats")

            def on_text(prompt, method, temperature, k, max_new, progress=gr.Progress()):
                try:
                    spec, ar = text.run(prompt, method, temperature, k, max_new, progress)
                except ValueError as e:  # bad input: say so in the page, keep the page usable
                    return "", "", problem(e)
                return spec.text, ar.text, stats_table(spec.stats, ar.stats, method)

            go.click(on_text, [prompt, method, temperature, k, max_new], [spec_out, ar_out, stats])
        speech_tab(gr, models["speech"], drafting)
        image_tab(gr, models["image"], drafting)
        rap_tab(gr, models["rap"], drafting)
    return app


def side_by_side(gr, kind: str, component, label: str):
    with gr.Row():
        return (component(label=f"Speculative ({label})", elem_id=f"{kind}-spec"),
                component(label="ar", elem_id=f"{kind}-ar"))


def note_if_missing(gr, lazy: Lazy):
    if not lazy.available:
        gr.Markdown(f"*No {lazy.kind} model at `{lazy.path}` yet: the tab will say so when you generate.*")


def speech_tab(gr, lazy: Lazy, drafting=None):
    with gr.Tab("Speech"):
        note_if_missing(gr, lazy)
        with gr.Row():
            text = gr.Textbox(label="Text", value="The quick brown fox jumps over the lazy dog.", lines=3,
                              elem_id="speech-text")
            with gr.Column():
                prompt = gr.Audio(label="Voice prompt (3 s used; a one-voice model such as the shipped one ignores it)",
                                  type="filepath")
                tolerance = gr.Slider(1, 8, value=3, step=1, label="VADUSA tolerance (1 = exact)")
                temperature = gr.Slider(0.0, 1.5, value=0.3, step=0.05, label="Temperature (the shipped model's: 0.3)")
                longest = gr.Slider(1, 20, value=6, step=1, label="At most (seconds)")
        go = gr.Button("Generate", variant="primary", elem_id="speech-generate")
        spec_out, ar_out = side_by_side(gr, "speech", gr.Audio, "VADUSA")
        stats = gr.Markdown(elem_id="speech-stats")

        def run(text, prompt, tolerance, temperature, longest, progress=gr.Progress()):
            try:
                tts = lazy.get()
                kw = dict(voice_prompt=prompt or None, temperature=temperature, max_seconds=float(longest))
                progress(0.1, desc="vadusa")
                spec = tts.generate(text, method="vadusa", tolerance=int(tolerance), drafting=drafting, **kw)
                progress(0.55, desc="ar")
                ar = tts.generate(text, method="ar", **kw)
            except ValueError as e:
                return None, None, problem(e)
            extra = [("real-time factor", f"{spec.real_time_factor:.2f}", f"{ar.real_time_factor:.2f}")]
            return ((spec.sample_rate, spec.audio), (ar.sample_rate, ar.audio),
                    stats_table(spec.stats, ar.stats, f"vadusa k={int(tolerance)}", extra))

        go.click(run, [text, prompt, tolerance, temperature, longest], [spec_out, ar_out, stats])


def image_tab(gr, lazy: Lazy, drafting=None):
    with gr.Tab("Image"):
        note_if_missing(gr, lazy)
        with gr.Row():
            caption = gr.Textbox(label="Caption", value="a small red circle left of a large blue square",
                                 elem_id="image-prompt")
            with gr.Column():
                cfg = gr.Slider(1.0, 6.0, value=3.0, step=0.5, label="CFG scale")
                temperature = gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Temperature")
                relaxed = gr.Checkbox(label="Relaxed acceptance (LANTERN, lossy)", value=False)
                seed = gr.Number(label="Seed", value=0, precision=0)
        go = gr.Button("Generate", variant="primary", elem_id="image-generate")
        spec_out, ar_out = side_by_side(gr, "image", gr.Image, "Hawk")
        stats = gr.Markdown(elem_id="image-stats")

        def run(caption, cfg, temperature, relaxed, seed, progress=gr.Progress()):
            try:
                gen = lazy.get()
                kw = dict(cfg_scale=cfg, temperature=temperature, seed=int(seed))
                progress(0.1, desc="hawk")
                spec = gen.generate(caption, method="hawk", acceptance="relaxed" if relaxed else None,
                                    drafting=drafting, **kw)
                progress(0.55, desc="ar")
                ar = gen.generate(caption, method="ar", **kw)
            except ValueError as e:
                return None, None, problem(e)
            return spec.image.resize((256, 256)), ar.image.resize((256, 256)), stats_table(spec.stats, ar.stats,
                                                                                            "hawk")

        go.click(run, [caption, cfg, temperature, relaxed, seed], [spec_out, ar_out, stats])


def rap_tab(gr, lazy: Lazy, drafting=None):
    with gr.Tab("Rap"):
        note_if_missing(gr, lazy)
        with gr.Row():
            lyrics = gr.Textbox(label="Lyrics (one line per bar)", lines=4, elem_id="rap-lyrics",
                                value="we walk the road today\nand sing the night away")
            with gr.Column():
                beat = gr.Audio(label="Beat", type="filepath", elem_id="rap-beat")
                prompt = gr.Audio(label="Voice prompt (empty: the model's own)", type="filepath")
                temperature = gr.Slider(0.0, 1.5, value=1.0, step=0.05, label="Temperature")
        go = gr.Button("Generate", variant="primary", elem_id="rap-generate")
        spec_out, ar_out = side_by_side(gr, "rap", gr.Audio, "draft heads")
        stats = gr.Markdown(elem_id="rap-stats")

        def run(lyrics, beat, prompt, temperature, progress=gr.Progress()):
            if not beat:
                return None, None, problem(ValueError("no beat: upload a drum loop (WAV)"))
            try:
                rap = lazy.get()
                progress(0.1, desc="heads")
                spec = rap.generate(lyrics, beat, voice_prompt=prompt or None, method="heads",
                                    temperature=temperature, drafting=drafting)
                progress(0.55, desc="ar")
                ar = rap.generate(lyrics, beat, voice_prompt=prompt or None, method="ar", temperature=temperature)
            except ValueError as e:
                return None, None, problem(e)
            extra = [("real-time factor", f"{spec.real_time_factor:.2f}", f"{ar.real_time_factor:.2f}"),
                     ("tempo", f"{spec.bpm:.0f} BPM", f"{ar.bpm:.0f} BPM")]
            return ((spec.sample_rate, spec.mix), (ar.sample_rate, ar.mix),
                    stats_table(spec.stats, ar.stats, "heads", extra))

        go.click(run, [lyrics, beat, prompt, temperature], [spec_out, ar_out, stats])


def add_arguments(p: argparse.ArgumentParser):
    from specgen_apps.cli import add_drafting

    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--text-model", default=TEXT_DEFAULTS["model"])
    p.add_argument("--text-draft", default=TEXT_DEFAULTS["draft"])
    p.add_argument("--text-heads", nargs="*", default=TEXT_DEFAULTS["heads"])
    for kind, path in MODELS.items():
        p.add_argument(f"--{kind}-model", default=path)
    add_drafting(p)  # how every tab's speculative method drafts


def launch(args, block: bool = True):
    from specgen_apps.cli import drafting_of
    from modalities.image import ImagePipeline
    from modalities.rap import RapPipeline
    from modalities.speech import SpeechPipeline

    models = {"speech": Lazy("speech", args.speech_model, SpeechPipeline.from_pretrained),
              "image": Lazy("image", args.image_model, ImagePipeline.from_pretrained),
              "rap": Lazy("rap", args.rap_model, RapPipeline.from_pretrained)}
    drafting = drafting_of(args) if hasattr(args, "backend") else None  # (a caller may leave the options out)
    app = build_app(TextDemo(args.text_model, args.text_draft, args.text_heads, drafting), models, drafting)
    app.queue().launch(server_name=args.host, server_port=args.port, prevent_thread_lock=not block,
                       show_error=False)
    return app


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    launch(p.parse_args(argv))


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    main()

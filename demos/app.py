"""One Gradio app, a tab per modality: the speculative method and `ar` side by side on the same input, with
tokens/s, speedup and mean accepted length. Models load on first use.

    specgen demo [--port 7860]          or          python demos/app.py
"""
from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ZOO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models", "zoo")
TEXT_DEFAULTS = {"model": os.path.join(ZOO, "text-30m"), "draft": os.path.join(ZOO, "text-pard-5m"),
                 "heads": [os.path.join(ZOO, f"text-30m-{k}") for k in ("medusa", "hydra", "koala", "redrafter")]}


class TextDemo:
    """The text tab's models: one target, shared by a pipeline per draft (the PARD draft, then each heads folder)."""

    def __init__(self, model: str, draft: str | None, heads: list[str]):
        self.model, self.draft = model, draft
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
            from specgen.heads import load_heads

            base = TextPipeline.from_pretrained(self.model, draft=self.draft)
            pipes = {m: base for m in ("ar", "ngram", "pard", "draft_model")}
            for h in self.heads:
                heads = load_heads(h, base.target.model)
                pipes[heads.kind] = TextPipeline(base.target.model, base.tokenizer, heads)
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


def stats_table(spec, ar, method: str) -> str:
    speed = spec.stats.tokens_per_s / ar.stats.tokens_per_s if ar.stats.tokens_per_s else float("nan")
    rows = [("", method, "ar"), ("---", "---", "---"),
            ("tokens/s", f"{spec.stats.tokens_per_s:.1f}", f"{ar.stats.tokens_per_s:.1f}"),
            ("speedup over ar", f"**{speed:.2f}x**", "1.00x"),
            ("mean accepted per target forward", f"{spec.stats.mean_accepted:.2f}", f"{ar.stats.mean_accepted:.2f}"),
            ("new tokens", str(spec.stats.new_tokens), str(ar.stats.new_tokens)),
            ("target forwards", str(spec.stats.target_forwards), str(ar.stats.target_forwards)),
            ("lossless", "yes" if spec.stats.lossless else f"no ({spec.stats.acceptance})", "yes")]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def problem(e: Exception) -> str:
    return f"**Could not generate:** {e}"


def build_app(text: TextDemo):
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
                return spec.text, ar.text, stats_table(spec, ar, method)

            go.click(on_text, [prompt, method, temperature, k, max_new], [spec_out, ar_out, stats])
    return app


def add_arguments(p: argparse.ArgumentParser):
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--text-model", default=TEXT_DEFAULTS["model"])
    p.add_argument("--text-draft", default=TEXT_DEFAULTS["draft"])
    p.add_argument("--text-heads", nargs="*", default=TEXT_DEFAULTS["heads"])


def launch(args, block: bool = True):
    app = build_app(TextDemo(args.text_model, args.text_draft, args.text_heads))
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

"""The apps over the modalities: the `specgen` console command (`cli`) and the Gradio demo (`demo`: `specgen demo`
or `python specgen_apps/demo.py`)."""

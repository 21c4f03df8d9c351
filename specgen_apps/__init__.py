"""Gradio demos: `specgen demo` or `python demos/app.py`."""

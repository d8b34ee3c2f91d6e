"""Tools around the method, not the method itself: the notebook runner (the project's main job),
the speed benchmark, the per-step cost table, and a Jupyter-free notebook executor for machines
without Jupyter. Nothing in htlib's model, data or training code imports from here."""

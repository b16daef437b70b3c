"""Plotly figures built from the core's result objects; the app's pages only place them.
One module per view: `tokens` (page 1 and the home page), `angles` (page 2), `runs` (page 3); `style` holds
what the colours mean.

Every builder takes plain results (`Decomposition.rows()`, `NextTokens`, `OcclusionMap`, `GradGeometry`
dicts, run-card records) and returns a `plotly.graph_objects.Figure`; nothing here computes a model
quantity. Colours mean one thing across the app: language blue and visual orange wherever a term is split
into the two, standard OPD grey, VDS purple, one colour per update rule (vgs shares the visual orange,
lang_steer the language blue, the terms they steer towards). Two other meanings get pairs of their own that
use neither blue nor orange: teacher-versus-student reliance on a cell of the image (teal / brown) and the
angle between two gradients (green when they agree, magenta when they conflict).
"""

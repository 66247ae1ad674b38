"""The tools that work around runs, each a command; no training run imports them.

`python -m offrl.tools.sweep`: many runs, locally or on Slurm; `python -m offrl.tools.report`: their results against
the published numbers; `python -m offrl.tools.evaluate`: a saved checkpoint evaluated again or exported;
`python -m offrl.tools.bench`: the update's speed per script and mode.
"""

"""Training: the solver loop, checkpoints, run folders, progress, evaluation and timing.

Everything here imports JAX (lazily from the command modules), except `config`, `run_folder` and
`progress`, which stay importable without it.
"""

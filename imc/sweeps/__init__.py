"""Hyperparameter sweeps: sweep files (:mod:`.spec`), scene sets (:mod:`.scenesets`), tasks and their
cache dependencies (:mod:`.tasks`), sequential / Ray execution (:mod:`.executors`), CSV / markdown /
plots (:mod:`.report`). The command is :mod:`imc.sweeps.cli` (``python -m imc sweep FILE``)."""

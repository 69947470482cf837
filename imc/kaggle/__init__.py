"""What ``submission.ipynb`` runs on Kaggle, as testable functions (stdlib + numpy only at import).

- :mod:`imc.kaggle.discover`: the competition folder and the attached datasets under
  ``/kaggle/input``, found by what they contain, in the classic and the newer mount layouts.
- :mod:`imc.kaggle.checks`: the commit-time checks that turn a silent zero score into an error
  (never on the scoring rerun).
- :mod:`imc.kaggle.runner`: ``imc run`` in a subprocess whose CSV is copied in a ``finally``.
- :mod:`imc.kaggle.debug`: a small train subset scored with ``eval`` before the real run.
"""

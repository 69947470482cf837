"""The real-photo benchmark (``make accuracy``, ``python -m imc accuracy``); see :mod:`imc.accuracy.cli`."""

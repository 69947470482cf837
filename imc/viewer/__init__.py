"""Viewer of pipeline outputs: ``streamlit run imc/viewer/app.py -- --run RUN`` and ``python -m imc viz``.

:mod:`imc.viewer.data` loads what a run wrote (no Streamlit), :mod:`imc.viewer.geometry` aligns
models to ground truth, :mod:`imc.viewer.figures` draws matplotlib and plotly figures.
"""

"""imc: an offline harness for the Kaggle Image Matching Challenge (IMC 2023 format).

Stages (one module each, ``main(conf, inputs, outputs) -> Path``):
:mod:`imc.pairs` → :mod:`imc.extract` → :mod:`imc.match` → :mod:`imc.verify` →
:mod:`imc.reconstruct` → :mod:`imc.submission`; :mod:`imc.pipeline` chains them per scene.
"""

__version__ = "0.1.0"

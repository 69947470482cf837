"""imc: an offline harness for the Kaggle Image Matching Challenge (IMC 2023 format).

The stages of a scene are declared once, in :mod:`imc.stages` (features → pairs → matches → fuse →
verified → sfm, one module each with ``main(conf, inputs, outputs) -> Path``); :mod:`imc.pipeline`
runs them for every scene and :mod:`imc.csv_writer` writes the competition CSV.
"""

__version__ = "0.1.0"

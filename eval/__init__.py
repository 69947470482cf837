"""eval: scoring (IMC 2023 mAA, ``python -m eval score``) and synthetic-scene generation for imc."""

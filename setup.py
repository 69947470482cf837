"""Packaging beside pyproject.toml for one thing it cannot say: ``configs/`` (top level of the
repository) ships inside the wheel as ``imc/configs``, so an installed imc finds its defaults and
presets (``imc.config.configs_dir``) while the repository keeps one copy of them."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["imc", "imc.*", "eval", "eval.*"]) + ["imc.configs", "imc.configs.sweeps"],
    package_dir={"imc.configs": "configs", "imc.configs.sweeps": "configs/sweeps"},
    package_data={"imc": ["demo_data/**/*"], "imc.configs": ["*.yaml", "*.csv"], "imc.configs.sweeps": ["*.yaml"]},
)

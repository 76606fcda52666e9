"""The package list, which pyproject.toml cannot express: divlab's packages plus `divlab.configs`, the
checkout's `configs/` (mapped in pyproject.toml) so a wheel can run experiments (`divlab.config_dir`), and the
studies' Hydra sweeper (`hydra_plugins/divlab_study_sweeper`: Hydra finds plugins in that namespace only)."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["divlab*"]), "divlab.configs", "hydra_plugins.divlab_study_sweeper"])

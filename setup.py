"""The package list, which pyproject.toml cannot express: divlab's packages plus `divlab.configs`, the
checkout's `configs/` (mapped in pyproject.toml) so a wheel can run experiments (`divlab.config_dir`)."""
from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["divlab*"]), "divlab.configs"])

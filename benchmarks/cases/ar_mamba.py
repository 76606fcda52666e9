"""The char_mamba experiment's model (Mamba backbone, Shakespeare, batch 12 × 64 chars) as a benchmark case."""
from benchmarks.cases.ar_s4d import make_ar_case


def make_case() -> dict:
    return make_ar_case("char_mamba")

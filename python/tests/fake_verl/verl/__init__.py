"""A stand-in for verl in the dump round-trip test: verl's module layout and function signatures, with the
formulas re-expressed in PyTorch from the project's notes on verl (not verl's code). Setting FAKE_VERL_BUG makes
it deliberately wrong (see trainer/ppo/core_algos.py), so that the test can show parity catching it."""

__version__ = "0.0.0+rlvec-stand-in"

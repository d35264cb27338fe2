"""Deprecated alias of `trl_smol.demo.data` (moved in 0.2.0, removed in 0.3.0)."""

from trl_smol._deprecated import moved

__getattr__ = moved(__name__, "trl_smol.demo.data")

"""Deprecated alias of `trl_smol.data.smoltalk2` (moved in 0.2.0, removed in 0.3.0)."""

from trl_smol._deprecated import moved

__getattr__ = moved(__name__, "trl_smol.data.smoltalk2")

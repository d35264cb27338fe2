"""Run at every interpreter start-up by `trl_smol.pth` (site-packages). Keep it tiny: stdlib only, no side effects
unless this process is the stock `trl sft` command or its training script. See `trl_smol/integration.py`."""

try:
    from trl_smol.integration import install

    install()
except Exception as error:  # never break an unrelated interpreter because of the plugin
    import sys

    print(
        f"trl-smol: plugin not activated ({type(error).__name__}: {error}). Install trl-smol and its dependencies "
        "(`pip install trl-smol`) in this environment, or set TRL_SMOL_DISABLE=1 to silence this.",
        file=sys.stderr,
    )

"""`samples.jsonl` rows written by hand, as `SampleGenerationCallback` writes them, for the tests of what reads them
(the model card, `trl-smol samples`)."""

import json

RUN_ID = "20261205-004000-ab12"


def sample_row(step, prompt, completion="🟢 Answer: 12", *, checks=None, thinking=None, stopped=True, tokens=8):
    """One row; `checks` (name -> bool or a score in [0, 1]) gives `passed` as the callback computes it (a score
    passes from 0.5 on; `{}`: a prompt without checks, `passed` null). Without `checks` the row has neither key, as
    rows written before scored samples."""
    row = {
        "run": RUN_ID,
        "step": step,
        "prompt": prompt,
        "completion": completion,
        "thinking": thinking,
        "enable_thinking": thinking is not None,
        "num_new_tokens": tokens,
        "stopped": stopped,
        "seconds": 0.2,
    }
    if checks is not None:
        row["checks"] = checks
        passes = [value >= 0.5 if not isinstance(value, bool) else value for value in checks.values()]
        row["passed"] = all(passes) if passes else None
    return row


def write_samples(folder, rows, tail=""):
    """`folder/samples.jsonl` holding `rows`, then `tail` (a line cut short by a crash, say)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows) + tail
    (folder / "samples.jsonl").write_text(text, encoding="utf-8")
    return folder

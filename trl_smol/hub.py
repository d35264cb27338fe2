"""Hub ids checked before anything loads: one error naming the model or dataset and the way out, within seconds.

Without a network, `from_pretrained` and `load_dataset` end after huggingface_hub's retries (five, with backoff, for
each request that retries: no setting shortens them) with an error that names a URL, not the recipe's model or
dataset; with `HF_HUB_OFFLINE=1` they end with one that does not say how to get the files. So before anything loads,
a hub id that is not in the local cache is checked once:

- offline (`HF_HUB_OFFLINE`, or `HF_DATASETS_OFFLINE` for a dataset): [`HubAccessError`] at once;
- online: one request for the repository's info (huggingface_hub's own client: its endpoint, proxy and token), no
  retry, `HF_HUB_ETAG_TIMEOUT` seconds at most; a network error or an unknown repository is [`HubAccessError`].

A repository the Hub answered for is recorded in `TRL_SMOL_HUB_CHECKED`, which the training process of `trl sft`
inherits from its CLI process: the check is one request per run, not one per process.

Each message names the setting and the id, and says what to do: download it where there is a network
(`hf download`), point the setting to a local copy, or set `HF_HUB_OFFLINE=1` where a copy is cached. A name that
looks like a local path (`./data`, `models/x/y`, `/abs/path`) and does not exist is reported as a missing path, which
resolves against the working directory, not the recipe's folder.

```python
from trl_smol.hub import check_hub_repo

check_hub_repo("HuggingFaceTB/SmolLM3-3B-Base", "model", setting="model_name_or_path")  # HubAccessError, or None
```
"""

from __future__ import annotations

import os
from collections.abc import Mapping

CHECKED_ENV = "TRL_SMOL_HUB_CHECKED"  # "kind:repo@revision" entries the Hub answered for, ";"-separated


class HubAccessError(OSError):
    """A model or dataset of the run can be read neither locally nor from the Hugging Face Hub."""


def looks_like_local_path(name: str) -> bool:
    """Whether `name` is meant as a path rather than a hub id (`org/name` or `name`)."""
    return (
        name.startswith((".", "/", "~"))
        or name.count("/") > 1
        or (os.sep != "/" and os.sep in name)
        or os.path.splitext(name)[1].lower() in (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt", ".arrow")
    )


def missing_path_message(setting: str, name: str) -> str:
    """The part of an error that says where a relative path was looked for."""
    where = os.path.abspath(os.path.expanduser(name))
    if os.path.isabs(os.path.expanduser(name)):
        return f"`{setting}: {name}` does not exist"
    return (
        f"`{setting}: {name}` does not exist (looked for {where}: paths in a recipe resolve against the working "
        f"directory, {os.getcwd()}, not against the recipe's folder)"
    )


def offline(kind: str, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the library that loads `kind` ("model" or "dataset") is in offline mode."""
    environ = os.environ if environ is None else environ
    names = ["HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"] + (["HF_DATASETS_OFFLINE"] if kind == "dataset" else [])
    return any(environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE") for name in names)


def is_cached(repo_id: str, kind: str, revision: str | None = None) -> bool:
    """Whether a copy of the repository is in the local Hugging Face cache (a model's `config.json`; any snapshot of
    a dataset, or the `datasets` library's own cache of it)."""
    from huggingface_hub import constants

    if kind == "model":
        from huggingface_hub import try_to_load_from_cache

        try:
            return isinstance(try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
        except Exception:  # noqa: BLE001 - an id huggingface_hub rejects is not cached
            return False
    folder = os.path.join(constants.HF_HUB_CACHE, f"{kind}s--" + repo_id.replace("/", "--"), "snapshots")
    if os.path.isdir(folder) and os.listdir(folder):
        return True
    from datasets import config

    return os.path.isdir(os.path.join(str(config.HF_DATASETS_CACHE), repo_id.replace("/", "___")))


def check_hub_repo(repo_id: str, kind: str, *, setting: str, revision: str | None = None) -> None:
    """Raise [`HubAccessError`] when the model or dataset `repo_id` (not an existing local path) cannot be read:
    a path that does not exist, offline and not cached, or online and the Hub does not answer for it. Returns at once
    when it is cached."""
    if looks_like_local_path(repo_id):
        raise HubAccessError(
            f"{missing_path_message(setting, repo_id)}, and it is not a {kind} id on the Hugging Face Hub either "
            "(`org/name`). Fix the path, or run from the folder it is relative to."
        )
    if is_cached(repo_id, kind, revision):
        return
    entry = f"{kind}:{repo_id}@{revision or ''}"
    checked = os.environ.get(CHECKED_ENV, "")
    if entry in checked.split(";"):  # by the `trl sft` process that launched this one
        return
    download = f"hf download {repo_id}" + (" --repo-type dataset" if kind == "dataset" else "")
    copy = f"point `{setting}` to a local copy"
    if offline(kind):
        variable = "HF_DATASETS_OFFLINE or HF_HUB_OFFLINE" if kind == "dataset" else "HF_HUB_OFFLINE"
        raise HubAccessError(
            f"The {kind} `{repo_id}` (`{setting}`) is neither a local folder ({_relative_note(repo_id)}) nor in the "
            f"local Hugging Face cache, and {variable} is set, so it cannot be downloaded. Download it once with "
            f"network access (`{download}`), {copy}, or unset {variable}."
        )
    reason, network = _hub_answer(repo_id, kind, revision)
    if reason is None:
        os.environ[CHECKED_ENV] = f"{checked};{entry}" if checked else entry
        return
    if network:
        way_out = (
            f"Connect this machine to the network, or download it where there is one (`{download}`) and copy the "
            f"Hugging Face cache here, or {copy}; with a cached copy, set HF_HUB_OFFLINE=1 so that nothing waits "
            "for the network."
        )
    else:
        way_out = f"Check the name (for a private {kind}, log in with `hf auth login`), or {copy}."
    raise HubAccessError(
        f"Cannot read the {kind} `{repo_id}` (`{setting}`) from the Hugging Face Hub: {reason}. It is neither a "
        f"local folder ({_relative_note(repo_id)}) nor in the local Hugging Face cache. {way_out}"
    )


def _relative_note(name: str) -> str:
    return f"looked for {os.path.abspath(name)}: paths resolve against the working directory"


def _hub_answer(repo_id: str, kind: str, revision: str | None) -> tuple[str | None, bool]:
    """(None, _) when the Hub knows the repository; else (why not, in a few words; whether the network failed).
    One request with huggingface_hub's client, no retry."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        HfApi().repo_info(repo_id, repo_type=kind, revision=revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except GatedRepoError:
        return None, False  # it exists; the download says what access it needs
    except RevisionNotFoundError:
        return f"it has no revision `{revision}`", False
    except RepositoryNotFoundError:
        return f"{constants.ENDPOINT} has no {kind} of that name (or a private one, and you are not logged in)", False
    except HfHubHTTPError as error:
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status is None or status < 500:
            return None, False  # left to the library, which reports it with its own words
        return f"{constants.ENDPOINT} answered HTTP {status}", True
    except Exception as error:  # noqa: BLE001 - httpx's network and timeout errors, a proxy that refuses, DNS
        text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"{constants.ENDPOINT} cannot be reached from this machine ({text[:160]})", True
    return None, False

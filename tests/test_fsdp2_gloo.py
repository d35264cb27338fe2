"""FSDP2 (torch's `fully_shard`) on 2 CPU processes over gloo: the path accelerate cannot launch on a CPU.

accelerate turns FSDP on only for GPU kinds, so `trl sft` with recipes/accelerate/fsdp2.yaml stops on a CPU-only
machine (tests/test_scale_out.py). What that recipe relies on is exercised here with the same torch calls, started by
hand: each SmolLM3 decoder layer and then the root sharded with `fully_shard` (accelerate's TRANSFORMER_BASED_WRAP),
one training step, the samples pass (every rank generates; FSDP2's forward hooks gather each layer's full parameters,
so the ranks step in sync), accelerate's FULL_STATE_DICT checkpoint (`save_fsdp_model`) and the final save
(`Accelerator.get_state_dict`'s options, then `save_pretrained`), both reloaded into an unsharded model.
"""

import json
import os
import socket
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PROMPTS = ["What is 7 plus 5?", "Name a primary colour.", "Say hi."]
LEARNING_RATE = 0.5  # large, so that one SGD step moves every weight far beyond float32 noise


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _samples(model, tokenizer) -> list[dict]:
    from trl_smol.samples import SampleGenerator, load_prompts

    # batch_size 1: each rank makes several generate calls, which must stay in step when parameters are sharded
    generator = SampleGenerator(load_prompts(PROMPTS), max_new_tokens=12, batch_size=1)
    rows, _ = generator.generate(model, tokenizer, step=1)
    return [{key: row[key] for key in ("prompt", "completion", "thinking", "num_new_tokens")} for row in rows]


def _worker(rank: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    import torch
    import torch.distributed as dist
    from accelerate import PartialState
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import save_fsdp_model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    # accelerate's state, which the samples pass splits prompts with, as a trainer with `use_cpu` sets it up
    assert PartialState(cpu=True).num_processes == 2
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    sharded, reference = (AutoModelForCausalLM.from_pretrained(model_dir) for _ in range(2))
    for layer in sharded.model.layers:
        fully_shard(layer)
    fully_shard(sharded)
    held = sum(p.to_local().numel() for p in sharded.parameters() if isinstance(p, DTensor))
    whole = sum(p.numel() for p in reference.parameters())

    # One SGD step on 4 rows, 2 per rank. FSDP2 averages gradients over ranks; the unsharded reference sees all 4
    # rows and averages the two halves' losses the same way.
    rows = torch.randint(20, len(tokenizer), (4, 16), generator=torch.Generator().manual_seed(0))
    for model, loss in (
        (sharded, lambda: sharded(input_ids=rows[2 * rank : 2 * rank + 2], labels=rows[2 * rank : 2 * rank + 2]).loss),
        (reference, lambda: sum(reference(input_ids=half, labels=half).loss for half in rows.split(2)) / 2),
    ):
        optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
        loss().backward()
        optimizer.step()
        optimizer.zero_grad()

    # Ranks stop generating at different steps in general; with parameters sharded every forward is a gather, so
    # every generate call must run in step (`synced_gpus`), or a rank that stopped early leaves the other waiting.
    synced, generate = [], sharded.generate
    sharded.generate = lambda **kwargs: synced.append(kwargs["synced_gpus"]) or generate(**kwargs)
    sharded_rows = _samples(sharded, tokenizer)

    # The checkpoint `Trainer._save_checkpoint` writes for an FSDP run with FULL_STATE_DICT, then the final save.
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, state_dict_type="FULL_STATE_DICT")
    process = type("Process", (), {"num_processes": 2, "process_index": rank})()
    save_fsdp_model(plugin, process, sharded, os.path.join(out, "checkpoint"))
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, cpu_offload=True)
    state_dict = get_model_state_dict(sharded, options=options)
    if rank == 0:
        reference.save_pretrained(os.path.join(out, "final"), state_dict=state_dict)
        tokenizer.save_pretrained(os.path.join(out, "final"))
    dist.barrier()

    reloaded = AutoModelForCausalLM.from_pretrained(os.path.join(out, "final"))
    reloaded_rows = _samples(reloaded, tokenizer)  # the same weights, unsharded, every rank on its own prompts
    if rank == 0:
        checkpoint = torch.load(os.path.join(out, "checkpoint", "pytorch_model_fsdp.bin"), weights_only=True)
        expected = reference.state_dict()
        saved = reloaded.state_dict()
        report = {
            "held_share": held / whole,
            "synced_generate_calls": synced,
            "checkpoint_keys_match": sorted(checkpoint) == sorted(expected),
            "checkpoint_vs_final": max((checkpoint[k] - saved[k]).abs().max().item() for k in expected),
            "final_vs_reference": max((saved[k] - expected[k]).abs().max().item() for k in expected),
            "moved_by_training": min((saved[k] - initial).abs().max().item() for k, initial in _initial(model_dir)),
            "sharded_rows": sharded_rows,
            "reloaded_rows": reloaded_rows,
        }
        Path(out, "report.json").write_text(json.dumps(report))
    dist.barrier()
    dist.destroy_process_group()


def _initial(model_dir: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(model_dir).state_dict().items()


@pytest.fixture(scope="module")
def fsdp2_report(tmp_path_factory):
    import torch.multiprocessing as mp

    from trl_smol.testing import save_tiny_smollm3

    folder = tmp_path_factory.mktemp("fsdp2")
    model_dir = save_tiny_smollm3(folder / "model", num_hidden_layers=4)
    context = mp.start_processes(
        _worker, args=(_free_port(), model_dir, str(folder)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 240  # a rank left waiting in a collective would otherwise hang the suite
    while not context.join(timeout=max(1.0, deadline - time.monotonic())):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the 2-process FSDP2 run did not finish in 240 s (a rank stuck in a collective?)")
    return json.loads((folder / "report.json").read_text())


def test_each_rank_holds_half_of_the_parameters(fsdp2_report):
    assert fsdp2_report["held_share"] == pytest.approx(0.5, abs=0.01)


def test_samples_from_the_sharded_model_equal_the_unsharded_model_with_the_same_weights(fsdp2_report):
    rows = fsdp2_report["sharded_rows"]
    assert [row["prompt"] for row in rows] == PROMPTS  # one row per prompt, gathered on rank 0
    assert all(row["num_new_tokens"] > 0 for row in rows)
    assert rows == fsdp2_report["reloaded_rows"]  # greedy decoding: the same tokens
    # 3 prompts padded to 2 per rank, one generate call each; all synchronised (found from the model: no accelerate
    # FSDP state exists in a run launched without accelerate)
    assert fsdp2_report["synced_generate_calls"] == [True, True]


def test_checkpoint_and_final_save_reload_unsharded_with_the_trained_weights(fsdp2_report):
    assert fsdp2_report["checkpoint_keys_match"]
    assert fsdp2_report["checkpoint_vs_final"] == 0.0
    assert fsdp2_report["moved_by_training"] > 1e-5  # every tensor changed: the save is not the initial weights
    # Sharded and unsharded SGD differ only in float32 summation order (gradient reduce-scatter vs one sum).
    assert fsdp2_report["final_vs_reference"] < 1e-5

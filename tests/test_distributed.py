"""Ending multi-process runs: `settle_process_group` quiets a gloo group before it is destroyed."""

import time

import torch.distributed as dist

from trl_smol.distributed import settle_process_group


def test_without_a_process_group_there_is_nothing_to_settle():
    assert not dist.is_initialized()
    assert settle_process_group() is False


def test_a_gloo_group_gets_a_barrier_and_a_pause_before_it_goes(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        started = time.perf_counter()
        assert settle_process_group(seconds=0.05) is True
        assert time.perf_counter() - started >= 0.05
    finally:
        dist.destroy_process_group()

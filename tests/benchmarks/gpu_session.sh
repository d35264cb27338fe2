#!/usr/bin/env bash
# One lent-GPU session in one command: every GPU benchmark against one random SmolLM3-3B checkpoint, within a deadline.
#
#   bash tests/benchmarks/gpu_session.sh OUT_DIR [SECONDS] [WHEEL_DIR]
#
# WHEEL_DIR (optional) holds wheels for what the machine lacks (trl, datasets, bitsandbytes, a newer transformers...);
# they are installed with --no-deps into a private folder put first on PYTHONPATH, and the repo itself is used from
# the source tree (no pip install of trl-smol). Order: throughput stock vs auto (gpu_bench.py: QLoRA, LoRA and full
# at 2048 tokens on chat-length rows and on rows that fill 2048, LoRA at 8192; the most telling cases first), then the
# estimator at 4096 tokens (gpu_memory.py) and the batch forms (gpu_packing.py) with what time is left, then ZeRO-3
# and FSDP2 over every GPU (gpu_scale_out.py; on one GPU it only writes that it was skipped). Each part writes its
# JSON into OUT_DIR as it goes, so a part stopped at the deadline still leaves its finished cases. Default deadline:
# 8 minutes.
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT_DIR [SECONDS] [WHEEL_DIR]}
deadline=$((SECONDS + ${2:-480}))
wheels=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
if [ -n "$wheels" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$wheels"/*.whl \
        || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site:$repo
else
    export PYTHONPATH=$repo
fi
left() { echo $((deadline - SECONDS)); }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, transformers, trl, peft, bitsandbytes, datasets; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'peft', peft.__version__, 'bnb', bitsandbytes.__version__, 'datasets', datasets.__version__)" | tee -a "$out/gpu.txt"

checkpoint=/tmp/SmolLM3-3B-random
python3 -c "import sys; sys.path.insert(0, '$here'); from gpu_memory import build_random_checkpoint; build_random_checkpoint('$checkpoint')" \
    || { echo "could not build the checkpoint"; exit 1; }
echo "checkpoint built; $(left) s left"

bench_s=$(( $(left) * 80 / 100 ))
timeout "$bench_s" python3 "$here/gpu_bench.py" --no-install --checkpoint "$checkpoint" --out "$out/gpu_bench.json" \
    --budget-s $((bench_s - 10)) --case-timeout-s 90 --steps 4 --warmup-steps 1 2>&1 | grep -v Warning
echo "gpu_bench done; $(left) s left"

if [ "$(left)" -gt 90 ]; then
    timeout 120 python3 "$here/gpu_packing.py" --checkpoint "$checkpoint" \
        --out "$out/gpu_packing.json" 2>&1 | grep -v -i warn
fi
echo "gpu_packing done; $(left) s left"

if [ "$(left)" -gt 80 ]; then
    timeout $(( $(left) - 10 )) python3 "$here/gpu_memory.py" --checkpoint "$checkpoint" \
        --cases lora:4096 qlora:4096 full:4096 --output "$out/gpu_memory.json" 2>&1 | grep -v -i warn
fi

if [ "$(left)" -gt 120 ]; then
    timeout $(( $(left) - 10 )) python3 "$here/gpu_scale_out.py" --checkpoint "$checkpoint" \
        --out "$out/gpu_scale_out.json" --case-timeout-s $(( ($(left) - 20) / 2 )) 2>&1 | grep -v -i warn
fi
echo "all done; $(left) s left"

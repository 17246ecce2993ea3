#!/usr/bin/env bash
# Train the shipped checkpoints. On a GPU machine: DEVICE=cuda bash scripts/train_shipped.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${DEVICE:-auto}
run() { python -m explorer train --device "$DEVICE" "$@"; }

run --kind vae --backbone conv --hidden 32,64 --latent-dim 16 --dataset fashion-mnist --epochs 12 \
    --out checkpoints/fashion-mnist-vae-conv16.safetensors
run --kind ae --backbone conv --hidden 32,64 --latent-dim 32 --dataset fashion-mnist --epochs 10 \
    --out checkpoints/fashion-mnist-ae-conv32.safetensors
run --kind sae --backbone mlp --hidden "" --latent-dim 1024 --k 32 --dataset fashion-mnist --epochs 15 \
    --out checkpoints/fashion-mnist-sae-topk1024.safetensors
run --kind ae --backbone mlp --hidden 128,64 --latent-dim 32 --dataset mnist --epochs 60 --batch-size 64 \
    --out checkpoints/mnist-ae-mlp32.safetensors
run --kind dae --backbone conv --hidden 32,64 --latent-dim 32 --noise gaussian --noise-level 0.15 \
    --dataset fashion-mnist --epochs 10 --out checkpoints/fashion-mnist-dae-conv32.safetensors

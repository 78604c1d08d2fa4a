"""Writes a Qwen2-VL model directory with random weights for a given config.json, so a GPU
benchmark can run at a real model's size (e.g. gme-qwen2-vl-2b.config.json here, the shape of
GME-Qwen2-VL-2B) without its weights. Weights use transformers' own initialisation, seeded.

    python scripts/bench/random_qwen2vl.py --config scripts/bench/gme-qwen2-vl-2b.config.json \
        --out /tmp/gme2b-random [--dtype bfloat16] [--device cuda]

Also writes preprocessor_config.json with GME's image bounds (256..1280 visual tokens).
"""
import argparse
import json
import os

import torch
from transformers import AutoConfig, Qwen2VLForConditionalGeneration


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    with open(a.config) as f:
        raw = json.load(f)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
    config = AutoConfig.from_pretrained(a.out)
    torch.manual_seed(a.seed)
    dtype = getattr(torch, a.dtype)
    with torch.device(a.device):
        model = Qwen2VLForConditionalGeneration._from_config(config, dtype=dtype)
    model.save_pretrained(a.out, safe_serialization=True)
    with open(os.path.join(a.out, "preprocessor_config.json"), "w") as f:
        json.dump(
            {
                "min_pixels": 256 * 28 * 28,
                "max_pixels": 1280 * 28 * 28,
                "patch_size": 14,
                "temporal_patch_size": 2,
                "merge_size": 2,
                "image_mean": [0.48145466, 0.4578275, 0.40821073],
                "image_std": [0.26862954, 0.26130258, 0.27577711],
                "rescale_factor": 1 / 255,
                "resample": 3,
            },
            f,
            indent=2,
        )
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {a.out}: {n / 1e9:.2f}B parameters, {a.dtype}")


if __name__ == "__main__":
    main()

"""The HF transformers side of `folio bench embed --peer`: runs the exact token ids and pixel
values Folio ran (written by Folio to a safetensors file) through transformers' Qwen2VLModel,
left-padded in the same batches, pools the last token (GME) and L2-normalises, and prints one
JSON object: latency over all pages (mean/min/max ms after one warm-up pass), versions, and the
embeddings so Folio can report their agreement with its own.

    python scripts/bench/embed_peer.py --model DIR --inputs inputs.safetensors \
        --batch-size 4 --repeat 3 --device cuda --dtype bf16
"""
import argparse
import inspect
import json
import time

import torch
import transformers
from safetensors.torch import load_file
from transformers import Qwen2VLForConditionalGeneration


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--inputs", required=True)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    a = p.parse_args()
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    device = torch.device(a.device)
    attention = "sdpa"
    full = Qwen2VLForConditionalGeneration.from_pretrained(
        a.model, dtype=dtype, attn_implementation=attention
    )
    model = full.model.to(device).eval()
    image_token = full.config.image_token_id
    takes_types = "mm_token_type_ids" in inspect.signature(model.forward).parameters

    t = load_file(a.inputs)
    n = sum(1 for k in t if k.startswith("ids."))
    pages = [(t[f"ids.{i}"], t[f"pixels.{i}"], t[f"grid.{i}"]) for i in range(n)]
    batches = []
    for s in range(0, n, a.batch_size):
        chunk = pages[s : s + a.batch_size]
        width = max(len(ids) for ids, _, _ in chunk)
        ids = torch.zeros(len(chunk), width, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for row, (x, _, _) in enumerate(chunk):
            ids[row, width - len(x) :] = x
            mask[row, width - len(x) :] = 1
        pixels = torch.cat([px for _, px, _ in chunk])
        grid = torch.stack([g for _, _, g in chunk])
        batches.append((ids, mask, pixels, grid))

    def run(keep):
        out = []
        with torch.no_grad():
            for ids, mask, pixels, grid in batches:
                kwargs = dict(
                    input_ids=ids.to(device),
                    attention_mask=mask.to(device),
                    pixel_values=pixels.to(device, dtype),
                    image_grid_thw=grid.to(device),
                )
                if takes_types:
                    kwargs["mm_token_type_ids"] = (ids == image_token).long().to(device)
                h = model(**kwargs).last_hidden_state[:, -1].float()
                h = torch.nn.functional.normalize(h, dim=-1)
                if keep:
                    out.extend(h.cpu().tolist())
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out

    embeddings = run(True)
    times = []
    for _ in range(a.repeat):
        started = time.perf_counter()
        run(False)
        times.append(time.perf_counter() - started)
    ms = [x * 1e3 for x in times]
    print(
        json.dumps(
            {
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "attention": attention,
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "dtype": a.dtype,
                "latency_ms": {"mean": sum(ms) / len(ms), "min": min(ms), "max": max(ms)},
                "embeddings": embeddings,
            }
        )
    )


if __name__ == "__main__":
    main()

"""Peer for `folio bench rerank --peer <python>`: the same pointwise prompts (token ids written
by Folio) through HF transformers on CPU in float32, batched and left-padded the way Folio
batches them (sorted by length, `--batch-size` per forward pass, explicit position ids), with
only the last position's logits computed. Prints one JSON object on stdout.

The model is an HF directory or a .gguf file (transformers dequantizes GGUF weights to f32).
Runs in the reference venv (scripts/reference/setup-venv.sh; GGUF also needs the gguf package).
"""

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402


def load(model: str):
    if model.endswith(".gguf"):
        return AutoModelForCausalLM.from_pretrained(
            os.path.dirname(model) or ".", gguf_file=os.path.basename(model), dtype=torch.float32
        )
    if os.path.isdir(model) and not os.path.isfile(os.path.join(model, "config.json")):
        ggufs = sorted(f for f in os.listdir(model) if f.endswith(".gguf"))
        if len(ggufs) == 1:
            return AutoModelForCausalLM.from_pretrained(model, gguf_file=ggufs[0], dtype=torch.float32)
    return AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)


def score_all(model, prompts, batch_size, pad_id):
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    out = [None] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        width = max(len(prompts[i]) for i in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for row, i in enumerate(chunk):
            p = prompts[i]
            ids[row, width - len(p) :] = torch.tensor(p)
            mask[row, width - len(p) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            logits = model(
                input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
            ).logits[:, -1, :]
            logprobs = torch.log_softmax(logits.float(), dim=-1)
        for row, i in enumerate(chunk):
            out[i] = logprobs[row]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--prompts", required=True, help="JSON list of token-id lists")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with open(args.prompts) as f:
        prompts = json.load(f)
    model = load(args.model).eval()
    pad_id = 0
    score_all(model, prompts, args.batch_size, pad_id)  # warm-up
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        score_all(model, prompts, args.batch_size, pad_id)
        times.append(time.perf_counter() - t)
    mean = statistics.mean(times)
    print(
        json.dumps(
            {
                "transformers": transformers.__version__,
                "torch": torch.__version__,
                "threads": torch.get_num_threads(),
                "latency_ms": {"mean": mean * 1e3, "min": min(times) * 1e3, "max": max(times) * 1e3},
                "candidates_per_s": len(prompts) / mean,
            }
        )
    )


if __name__ == "__main__":
    main()

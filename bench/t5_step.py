"""The PyTorch anchor for `metaprompt bench tune`: the same prompt-tuning step of flan-t5-small
(batch, prompt and weights that `metaprompt bench tune --save DIR` wrote) in PyTorch eager, in
PEFT (which loads our prompt folder as it is) and under torch.compile; each prints its median
ms/step and its loss, which must match ours (the same step, not just the same shapes)."""
import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from safetensors.numpy import load_file
from transformers import T5Config, T5ForConditionalGeneration


def load_model(model_dir: Path) -> T5ForConditionalGeneration:
    """Hugging Face's T5 from our converted checkpoint, dequantised as our loaders do."""
    c = json.loads((model_dir / "config.json").read_text())
    model = T5ForConditionalGeneration(T5Config(**c, dropout_rate=0.0, is_encoder_decoder=True))
    # transformers 5 always ties lm_head to `shared` (it reads tie_word_embeddings=False only as
    # "do not rescale"); flan-t5's head is its own matrix.
    model.lm_head.weight = torch.nn.Parameter(model.lm_head.weight.detach().clone())
    raw = load_file(model_dir / "model.safetensors")
    state = {}
    for name, q in raw.items():
        if name.endswith((".scale", ".zero_point")):
            continue
        if name + ".scale" in raw:
            zero = raw[name + ".zero_point"].astype(np.int32).reshape(())
            scale = raw[name + ".scale"].astype(np.float32).reshape(())
            w = (q.astype(np.int32) - zero).astype(np.float32) * scale
        else:
            w = q.astype(np.float32)
        state[name] = torch.from_numpy(np.ascontiguousarray(w))
    # Both stacks embed with `shared` (transformers 5 ties them only with tied heads).
    for stack in ("encoder", "decoder"):
        state[f"{stack}.embed_tokens.weight"] = state["shared.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    assert model.lm_head.weight.data_ptr() != model.shared.weight.data_ptr()
    model.eval().requires_grad_(False)
    return model


def timed(step, steps: int) -> tuple[float, float]:
    """(median ms, loss of the first step) over `steps` steps after two warm-up steps."""
    loss = step()
    step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms), loss


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", type=Path, default=Path("models/flan-t5-small"))
    ap.add_argument("--bench", type=Path, required=True, help="the folder bench tune --save wrote")
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count())
    model = load_model(args.model)
    batch = json.loads((args.bench / "batch.json").read_text())
    inputs = torch.tensor(batch["inputs"])
    labels = torch.tensor(batch["targets"])
    values = load_file(args.bench / "adapter_model.safetensors")["prompt_embeddings"]
    prompt = torch.nn.Parameter(torch.from_numpy(values.copy()))
    b = inputs.shape[0]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {tuple(inputs.shape)}"
          f" + prompt {tuple(prompt.shape)}, targets {tuple(labels.shape)}")

    def loss_of(p: torch.Tensor) -> torch.Tensor:
        x = torch.cat([p.unsqueeze(0).expand(b, -1, -1), model.shared(inputs)], 1)
        return model(inputs_embeds=x, labels=labels).loss

    def eager() -> float:
        prompt.grad = None
        loss = loss_of(prompt)
        loss.backward()
        return loss.item()

    ms, loss = timed(eager, args.steps)
    print(f"pytorch eager: median {ms:.0f} ms/step, loss {loss:.6f}, "
          f"|prompt gradient| {prompt.grad.norm().item():.6f}")

    # PEFT loads prompt adapters for inference only; the prompt is made trainable afterwards.
    peft = PeftModel.from_pretrained(model, args.bench)
    table = peft.prompt_encoder["default"].embedding.weight
    assert torch.equal(table.detach(), torch.from_numpy(values)), "PEFT changed our prompt"
    table.requires_grad_(True)
    mask = torch.ones_like(inputs)

    def with_peft() -> float:
        table.grad = None
        loss = peft(input_ids=inputs, attention_mask=mask, labels=labels).loss
        loss.backward()
        return loss.item()

    ms, loss = timed(with_peft, args.steps)
    print(f"pytorch peft: median {ms:.0f} ms/step, loss {loss:.6f} (our folder, loaded as it is)")

    compiled = torch.compile(loss_of)

    def with_compile() -> float:
        prompt.grad = None
        loss = compiled(prompt)
        loss.backward()
        return loss.item()

    t0 = time.perf_counter()
    with_compile()
    print(f"torch.compile: first step (compiling) {time.perf_counter() - t0:.0f} s")
    ms, loss = timed(with_compile, args.steps)
    print(f"torch.compile: median {ms:.0f} ms/step, loss {loss:.6f}")


if __name__ == "__main__":
    main()

"""GPU check of the fused dropout LoRA under the training stage's fast path: every step must draw a new
dropout mask, also when the layer is compiled and replayed as a CUDA graph (a seed baked into the graph
would repeat one mask every step). Prints the share of steps whose LoRA output differs from the step before.
On an H200 (bench/results/dropout_mask_check.log) eager and compiled layers drew a new mask every step; the
CUDA-graph mode stopped on this script's own accumulated input gradient (fixed since, not run again).

    python bench/dropout_mask_check.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))


def lora_outputs(mode: str | None, steps: int = 6) -> list[torch.Tensor]:
    from peft import LoraConfig, get_peft_model

    from ftpipe.training.dropout_lora import fuse_dropout_lora_layers

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(256, 256, bias=False)).cuda().to(torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=16, lora_dropout=0.05, target_modules=["0"]))
    for module in model.modules():
        if hasattr(module, "lora_B"):
            torch.nn.init.normal_(module.lora_B["default"].weight)  # B = 0 at init would hide the LoRA path
    fuse_dropout_lora_layers(model)
    model.train()
    layer = model.base_model.model[0]
    forward = torch.compile(layer, mode=mode) if mode else layer
    x = torch.randn(512, 256, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    outputs = []
    for _ in range(steps):
        if mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()
        out = forward(x)
        # The input's gradient through autograd.grad, not accumulated in x.grad: under CUDA graphs an accumulated
        # gradient would read the previous replay's output.
        torch.autograd.grad(out.float().sum(), x)
        outputs.append(out.detach().clone())
    return outputs


def main() -> None:
    print(torch.cuda.get_device_name(), torch.__version__)
    for mode in (None, "default", "reduce-overhead"):
        outputs = lora_outputs(mode)
        changed = [not torch.equal(a, b) for a, b in zip(outputs, outputs[1:], strict=False)]
        verdict = "ok" if all(changed) else "MASK REPEATS"
        print(f"mode={mode}: {sum(changed)}/{len(changed)} steps drew a new mask -> {verdict}", flush=True)


if __name__ == "__main__":
    main()

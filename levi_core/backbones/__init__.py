"""Large pre-trained models that return every layer's hidden state (T5 encoder, ViT, BERT).

``load_backbone(name)`` gives ``(module, params, config)`` with pre-trained weights,
``init_backbone(config_or_name, seed)`` random ones; ``module.apply({"params": params}, *inputs)``
returns a ``BackboneOutput`` whose ``hidden_states`` hold every layer. ``pool_layers`` pools them
to [L, B, D]. ``tuning`` holds the optimizer masks, LoRA and weight interpolation.
"""

from levi_core.backbones.config import (
    PRESETS, BertConfig, Preset, T5Config, ViTConfig, get_config, get_preset,
)
from levi_core.backbones.outputs import (
    BackboneOutput, cls_pool, default_pooling, masked_mean, patch_mean, pool, pool_layers,
)
from levi_core.backbones.weights import (
    build_module, count_params, dummy_inputs, init_backbone, load_backbone, load_params,
    param_shapes, resolve_weights_dir,
)

__all__ = [
    "PRESETS", "BertConfig", "Preset", "T5Config", "ViTConfig", "get_config", "get_preset",
    "BackboneOutput", "cls_pool", "default_pooling", "masked_mean", "patch_mean", "pool",
    "pool_layers", "build_module", "count_params", "dummy_inputs", "init_backbone",
    "load_backbone", "load_params", "param_shapes", "resolve_weights_dir",
]

"""Supervised pre-training of a ViT from scratch on labelled images (the project's own backbone).

No pre-trained image transformer can be obtained offline, so the ``cpu`` preset's real-image
shift uses a small ViT that this project trains itself on classes the fine-tuning never sees
(CIFAR-10's animals; the fine-tuning data are its vehicles): the paper's three distributions
(pre-training, fine-tuning = ID, test = OOD) stay distinct.

``pretrain(config, train, held_out, ...)`` is deterministic for a seed (initialisation, the
order of the batches and the augmentation all come from it): the body is the project's ViT,
the classifier a Dense layer on the final-normed CLS state (the pooling every method here uses
for ViT), trained with AdamW (linear warm-up, cosine decay, gradient clipping) on batches
augmented by a random crop of the 4-pixel reflect-padded image and a horizontal flip, the usual
recipe for a ViT trained on small images. Images are uint8 and scaled to [-1, 1] exactly as the
fine-tuning engine scales them. Only the body is returned: the pre-training head is dropped, as
every method of the paper puts a new head on the backbone.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from dataclasses import dataclass
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from levi_core import progress
from levi_core.backbones.config import ViTConfig
from levi_core.backbones.vit import ViT
from levi_core.backbones.weights import init_backbone


@dataclass(frozen=True)
class PretrainConfig:
    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 0.5
    clip_norm: float = 1.0
    pad: int = 4  # random-crop padding (pixels, reflect)
    seed: int = 0


def scale_images(x: jnp.ndarray) -> jnp.ndarray:
    """uint8 -> float32 in [-1, 1], as ``engines.forward`` feeds the ViT."""
    return (x.astype(jnp.float32) / 255.0 - 0.5) / 0.5


def augment(images: np.ndarray, rng: np.random.Generator, pad: int) -> np.ndarray:
    """A random crop of the reflect-padded image and a random horizontal flip, per image."""
    n, h, w, _ = images.shape
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    flip = rng.random(n) < 0.5
    rows = dy[:, None] + np.arange(h)[None, :]  # [n, h]
    cols = dx[:, None] + np.arange(w)[None, :]  # [n, w]
    cols = np.where(flip[:, None], cols[:, ::-1], cols)
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


class _Classifier(nn.Module):
    config: ViTConfig
    num_classes: int

    @nn.compact
    def __call__(self, x):
        out = ViT(self.config, name="body")(x)
        return nn.Dense(self.num_classes, name="head")(out.hidden_states[-1][:, 0])


@functools.lru_cache(maxsize=8)
def _programs(config: ViTConfig, num_classes: int, pc: PretrainConfig, steps_per_epoch: int):
    """(optimizer, jitted step, jitted predict) for a recipe, once per process: runs that
    differ only in their seed (tests, seed studies) share one compilation."""
    model = _Classifier(config, num_classes)
    total = steps_per_epoch * pc.epochs
    warmup = max(1, int(pc.warmup_epochs * steps_per_epoch))
    schedule = optax.warmup_cosine_decay_schedule(0.0, pc.lr, warmup, max(total, warmup + 1))
    # No weight decay on biases, norms, the CLS token and position embeddings (the usual ViT
    # practice: decaying them only hurts).
    def decay_mask(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, leaf: leaf.ndim == 2 and "pos_embed" not in str(path[-1]), params)

    tx = optax.chain(optax.clip_by_global_norm(pc.clip_norm),
                     optax.adamw(schedule, weight_decay=pc.weight_decay, mask=decay_mask))

    @jax.jit
    def step(params, opt_state, xb, yb):
        def loss_fn(p):
            logits = model.apply({"params": p}, scale_images(xb))
            return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    @jax.jit
    def predict(params, xb):
        return jnp.argmax(model.apply({"params": params}, scale_images(xb)), -1)

    return tx, step, predict


def pretrain(config: ViTConfig, train: tuple[np.ndarray, np.ndarray],
             held_out: tuple[np.ndarray, np.ndarray], num_classes: int,
             pc: PretrainConfig = PretrainConfig(), label: str | None = "pre-training",
             log: Callable[[str], None] | None = None) -> tuple[dict, dict[str, Any]]:
    """Train ``config``'s ViT with a classifier on ``train`` = (uint8 images, int labels).

    Returns ``(body params, report)``; the report has the held-out accuracy after each epoch
    (``held_out`` = (images, labels) never trained on), the final train loss and the seconds.
    """
    x_train, y_train = train
    model = _Classifier(config, num_classes)
    key = jax.random.PRNGKey(pc.seed)
    body = init_backbone(config, seed=pc.seed)[1]
    head = model.init(key, jnp.zeros((1, config.image_size, config.image_size, config.channels)))
    params = {"body": body, "head": head["params"]["head"]}
    steps_per_epoch = len(x_train) // pc.batch_size
    total = steps_per_epoch * pc.epochs
    tx, step, predict = _programs(config, num_classes, dataclasses.replace(pc, seed=0), steps_per_epoch)
    opt_state = tx.init(params)

    def accuracy(params, x, y) -> float:
        preds = [np.asarray(predict(params, x[i:i + 500])) for i in range(0, len(x), 500)]
        return float(np.mean(np.concatenate(preds) == y))

    rng = np.random.default_rng(np.random.SeedSequence([pc.seed, 1]))
    history, t0 = [], time.perf_counter()
    loss = float("nan")
    with progress.bar(label, total, "step") as bar:
        for epoch in range(pc.epochs):
            order = rng.permutation(len(x_train))[: steps_per_epoch * pc.batch_size]
            losses = []
            for b in order.reshape(steps_per_epoch, pc.batch_size):
                xb = augment(x_train[b], rng, pc.pad)
                params, opt_state, l = step(params, opt_state, xb, y_train[b])
                losses.append(l)
                bar.update(1)
            loss = float(np.mean(jax.device_get(losses)))
            acc = accuracy(params, *held_out)
            history.append({"epoch": epoch + 1, "train_loss": round(loss, 4),
                            "held_out_accuracy": round(acc, 4),
                            "seconds": round(time.perf_counter() - t0, 1)})
            bar.set_postfix_str(f"epoch {epoch + 1}: loss {loss:.3f}, held-out acc {acc:.3f}")
            if log:
                log(f"epoch {epoch + 1}/{pc.epochs}: train loss {loss:.4f}, held-out accuracy "
                    f"{acc:.4f} ({time.perf_counter() - t0:.0f}s)")
    report = {"history": history, "held_out_accuracy": history[-1]["held_out_accuracy"] if history else None,
              "train_loss": loss, "seconds": round(time.perf_counter() - t0, 1)}
    return jax.device_get(params["body"]), report

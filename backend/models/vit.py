"""Vision Transformer backbones (ViT-Tiny / ViT-Small) built on torchvision's VisionTransformer.

The wrapper drops torchvision's classification head and returns the CLS token after the final
LayerNorm. Unlike torchvision's own forward it accepts any input size divisible by the patch size
(DINO's small local crops): the patch position embeddings are resized bicubically to the input's
grid, exactly as in DINO (Caron et al. 2021, ``interpolate_pos_encoding``). At the nominal image
size the torchvision embedding is used unchanged, so the result equals torchvision's forward.
Stochastic depth (``drop_path_rate``, DINO/timm's DropPath): in training each block's attention and
MLP residual branches are dropped per sample with probability rising linearly from 0 (first block)
to ``drop_path_rate`` (last), survivors scaled by 1 / (1 - p); 0 (default) runs torchvision's blocks.
Features (``pool``): the CLS token after the final LayerNorm (``"cls"``, the default and what
torchvision's classifier reads), or the mean of the patch tokens after the final LayerNorm
(``"mean"``: the global pooling MAE's paper uses for fine-tuning, He et al. 2022 sec. A.1, where a
CLS token no loss ever trains stays close to its random initialisation). MAE's reference code
averages before a separate LayerNorm (``fc_norm``); averaging after the encoder's own LayerNorm
needs no new parameters, so the backbone's weights are the same for either pooling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from ..errors import ConfigError

# name -> (hidden_dim, num_layers, num_heads, mlp_dim), as in DeiT / DINO.
VIT_CONFIGS = {
    "vit_tiny": (192, 12, 3, 768),
    "vit_small": (384, 12, 6, 1536),
}


POOLINGS = ("cls", "mean")


def vit_patch_size(image_size: int) -> int:
    """Patch size for a ViT trained at ``image_size``.

    Rule: aim at a grid of roughly 7-16 patches a side. The preferred patch is 4 px for images up to
    48 px (32 -> 8x8 grid), 8 px up to 128 px (64 -> 8x8, 96 -> 12x12) and 16 px above
    (224 -> 14x14). If the preferred size does not divide ``image_size``, the divisor of
    ``image_size`` in [preferred/2, 2*preferred] closest to it is used (ties go to the larger patch,
    which means fewer tokens); if there is none, a ConfigError names ``data.image_size``.
    """
    size = int(image_size)
    preferred = 4 if size <= 48 else 8 if size <= 128 else 16
    low, high = max(2, preferred // 2), 2 * preferred
    candidates = [p for p in range(low, high + 1) if size % p == 0 and p <= size]
    if not candidates:
        raise ConfigError(f"data.image_size must be divisible by a ViT patch size between {low} and "
                          f"{high} (preferred {preferred}), got {size}")
    return min(candidates, key=lambda p: (abs(p - preferred), -p))


class ViTBackbone(nn.Module):
    """ViT encoder: images (N, 3, H, W) -> features (N, hidden_dim): the CLS token or, with
    ``pool="mean"``, the mean patch token.

    Holds a torchvision ``VisionTransformer`` (``self.vit``, head removed). ``patch_size`` and
    ``grid_size`` (patches a side at the nominal ``image_size``) describe the token layout.
    """

    def __init__(self, image_size: int, patch_size: int, hidden_dim: int, num_layers: int,
                 num_heads: int, mlp_dim: int, drop_path_rate: float = 0.0, pool: str = "cls"):
        super().__init__()
        self.vit = VisionTransformer(image_size=image_size, patch_size=patch_size,
                                     num_layers=num_layers, num_heads=num_heads,
                                     hidden_dim=hidden_dim, mlp_dim=mlp_dim)
        self.vit.heads = nn.Identity()  # no classifier: the backbone ends at the CLS token
        self.image_size = image_size
        self.patch_size = patch_size
        self.grid_size = image_size // patch_size
        self.hidden_dim = hidden_dim
        self.num_heads = num_heads
        self.num_features = hidden_dim
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.drop_path_rates = [drop_path_rate * i / max(1, num_layers - 1) for i in range(num_layers)]
        if pool not in POOLINGS:
            raise ValueError(f"pool must be one of {POOLINGS}, got {pool!r}")
        self.pool = pool

    # ---- token pipeline ------------------------------------------------------------------------
    def _pos_embedding(self, grid_h: int, grid_w: int) -> Tensor:
        """Position embeddings (1, 1 + grid_h*grid_w, D), resized when the grid differs."""
        pos = self.vit.encoder.pos_embedding
        if grid_h == self.grid_size and grid_w == self.grid_size:
            return pos
        cls_pos, patch_pos = pos[:, :1], pos[:, 1:]
        d = patch_pos.shape[-1]
        patch_pos = patch_pos.reshape(1, self.grid_size, self.grid_size, d).permute(0, 3, 1, 2)
        patch_pos = F.interpolate(patch_pos.float(), size=(grid_h, grid_w), mode="bicubic",
                                  align_corners=False).to(pos.dtype)
        patch_pos = patch_pos.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, d)
        return torch.cat([cls_pos, patch_pos], dim=1)

    def _embed(self, x: Tensor) -> tuple[Tensor, int, int]:
        """Patchify, prepend the CLS token, add position embeddings: (N, 1 + h*w, D), h, w."""
        x = self.vit.conv_proj(x)                       # (N, D, h, w)
        n, _, grid_h, grid_w = x.shape
        x = x.permute(0, 2, 3, 1).flatten(1, 2)         # (N, h*w, D), row-major like torchvision
        cls = self.vit.class_token.expand(n, -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1)
        x = x + self._pos_embedding(grid_h, grid_w)
        return self.vit.encoder.dropout(x), grid_h, grid_w

    def forward_tokens(self, x: Tensor, ids_keep: Tensor | None = None) -> Tensor:
        """Every token after the final LayerNorm: (N, 1 + K, hidden_dim), CLS first.

        Without ``ids_keep`` K is every patch (row-major). With ``ids_keep`` (N, K) only those
        patches enter the encoder, in that order, after their position embeddings were added
        (MAE's encoder on the visible patches, He et al. 2022); the CLS token always does.
        """
        tokens, _, _ = self._embed(x)
        if ids_keep is not None:
            if ids_keep.dim() != 2 or ids_keep.shape[0] != x.shape[0]:
                raise ValueError(f"ids_keep must be (N={x.shape[0]}, K), got {tuple(ids_keep.shape)}")
            index = ids_keep.to(tokens.device)[..., None].expand(-1, -1, tokens.shape[-1])
            tokens = torch.cat([tokens[:, :1], tokens[:, 1:].gather(1, index)], dim=1)
        return self.vit.encoder.ln(self.vit.encoder.layers(tokens))

    def pooled(self, tokens: Tensor) -> Tensor:
        """Features (N, hidden_dim) from tokens after the final LayerNorm (N, 1 + K, hidden_dim):
        the CLS token, or the mean of the K patch tokens when ``pool == "mean"``."""
        return tokens[:, 1:].mean(dim=1) if self.pool == "mean" else tokens[:, 0]

    def forward(self, x: Tensor) -> Tensor:
        """Features after the final LayerNorm (N, hidden_dim): see ``pooled``."""
        tokens, _, _ = self._embed(x)
        if self.training and any(self.drop_path_rates):
            for block, p in zip(self.vit.encoder.layers, self.drop_path_rates):
                tokens = _block_with_drop_path(block, tokens, p)
        else:
            tokens = self.vit.encoder.layers(tokens)
        return self.pooled(self.vit.encoder.ln(tokens))

    def last_attention(self, x: Tensor) -> Tensor:
        """Last block's CLS-to-patch attention, (N, heads, grid_h, grid_w), float32.

        The softmax runs over all tokens (as in the forward pass); the CLS->CLS entry is then
        dropped and each head's map renormalised to sum to 1 over the patches. The last block's
        attention is recomputed with its own ``MultiheadAttention`` (need_weights=True), so no
        torchvision module is altered.
        """
        tokens, grid_h, grid_w = self._embed(x)
        blocks = list(self.vit.encoder.layers)
        for block in blocks[:-1]:
            tokens = block(tokens)
        last = blocks[-1]
        y = last.ln_1(tokens)
        _, weights = last.self_attention(y, y, y, need_weights=True, average_attn_weights=False)
        cls_to_patches = weights[:, :, 0, 1:].float()   # (N, heads, h*w)
        cls_to_patches = cls_to_patches / cls_to_patches.sum(dim=-1, keepdim=True)
        return cls_to_patches.reshape(x.shape[0], -1, grid_h, grid_w)


def drop_path(x: Tensor, p: float) -> Tensor:
    """Per-sample stochastic depth of a residual branch ``x`` (N, ...): zero with probability ``p``,
    else scaled by 1 / (1 - p) (the expectation is unchanged)."""
    if p <= 0.0:
        return x
    keep = 1.0 - p
    mask = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


def _block_with_drop_path(block: nn.Module, x: Tensor, p: float) -> Tensor:
    """torchvision's ``EncoderBlock.forward`` with both residual branches through ``drop_path``."""
    y = block.ln_1(x)
    y, _ = block.self_attention(y, y, y, need_weights=False)
    x = x + drop_path(block.dropout(y), p)
    return x + drop_path(block.mlp(block.ln_2(x)), p)


def build_vit(name: str, image_size: int, *, drop_path_rate: float = 0.0, pool: str = "cls") -> ViTBackbone:
    """ViT-Tiny or ViT-Small for ``image_size`` with the patch size from ``vit_patch_size``."""
    hidden_dim, num_layers, num_heads, mlp_dim = VIT_CONFIGS[name]
    return ViTBackbone(image_size, vit_patch_size(image_size), hidden_dim, num_layers, num_heads,
                       mlp_dim, drop_path_rate, pool)

"""The stand-in's vision tower: patch embedding, a few pre-norm transformer blocks, a GLU
projection to the language width and a 2x2 convolution that quarters the number of tokens,
framed by learnt begin/end-of-image embeddings (the shape of GLM-4V-9B's EVA2-CLIP tower)."""

import torch
from torch import nn
from torch.nn import functional


class PatchEmbedding(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        patch = config["patch_size"]
        self.proj = nn.Conv2d(config["in_channels"], hidden, kernel_size=patch, stride=patch)
        self.cls_embedding = nn.Parameter(torch.zeros(1, hidden))
        self.position_embedding = nn.Embedding((config["image_size"] // patch) ** 2 + 1, hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(images).flatten(2).transpose(1, 2)
        cls = self.cls_embedding.expand(x.shape[0], -1, -1)
        x = torch.cat((cls, x), dim=1)
        return x + self.position_embedding.weight.unsqueeze(0)


class VisionBlock(nn.Module):
    def __init__(self, config: dict) -> None:
        super().__init__()
        hidden = config["hidden_size"]
        self.heads = config["num_heads"]
        self.input_layernorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])
        self.query_key_value = nn.Linear(hidden, hidden * 3)
        self.dense = nn.Linear(hidden, hidden)
        self.post_attention_layernorm = nn.LayerNorm(hidden, eps=config["layer_norm_eps"])
        self.fc1 = nn.Linear(hidden, config["intermediate_size"])
        self.fc2 = nn.Linear(config["intermediate_size"], hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.query_key_value(self.input_layernorm(x)).chunk(3, dim=-1)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        attended = functional.scaled_dot_product_attention(q, k, v)
        x = x + self.dense(attended.transpose(1, 2).reshape(batch, length, hidden))
        return x + self.fc2(functional.gelu(self.fc1(self.post_attention_layernorm(x))))


class GLU(nn.Module):
    def __init__(self, width: int, ffn: int) -> None:
        super().__init__()
        self.linear_proj = nn.Linear(width, width, bias=False)
        self.norm1 = nn.LayerNorm(width)
        self.gate_proj = nn.Linear(width, ffn, bias=False)
        self.dense_h_to_4h = nn.Linear(width, ffn, bias=False)
        self.dense_4h_to_h = nn.Linear(ffn, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.gelu(self.norm1(self.linear_proj(x)))
        return self.dense_4h_to_h(functional.silu(self.gate_proj(x)) * self.dense_h_to_4h(x))


class EVA2CLIPModel(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        vision = config.vision_config
        self.patch_embedding = PatchEmbedding(vision)
        self.layers = nn.ModuleList(VisionBlock(vision) for _ in range(vision["num_hidden_layers"]))
        self.conv = nn.Conv2d(vision["hidden_size"], config.hidden_size, kernel_size=2, stride=2)
        self.linear_proj = GLU(config.hidden_size, config.ffn_hidden_size)
        self.boi = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.eoi = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.scaling_factor = vision.get("scaling_factor", 1.0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(batch, 3, size, size) pixels -> (batch, (size / patch / 2)^2 + 2, hidden) embeddings."""
        x = self.patch_embedding(images)
        for layer in self.layers:
            x = layer(x)
        x = x[:, 1:]  # the class token is not an image position
        batch, length, hidden = x.shape
        side = int(length**0.5)
        x = self.conv(x.transpose(1, 2).reshape(batch, hidden, side, side))
        x = self.linear_proj(x.flatten(2).transpose(1, 2))
        boi = self.boi.expand(batch, -1, -1)
        eoi = self.eoi.expand(batch, -1, -1)
        return torch.cat((boi, x, eoi), dim=1) / self.scaling_factor

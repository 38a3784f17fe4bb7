"""The GLM-4V-9B stand-in model (test code written for this platform, not THUDM's).

It mirrors the interface of the published remote code, which is what the platform's loader and
engine depend on: ``ChatGLMForConditionalGeneration`` reached through ``AutoModelForCausalLM``
(``auto_map``), the language model under ``.transformer`` with its vision tower at
``.transformer.vision``, and images handed to ``forward``/``generate`` as an ``images`` tensor
of shape (batch, 3, image_size, image_size). The prompt holds ``<|begin_of_image|>``, one
placeholder and ``<|end_of_image|>``; the model replaces those three positions by the image's
embeddings, so the sequence it attends over is longer than the ids it was given.
"""

import torch
from torch import nn
from torch.nn import functional
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast

from .configuration_chatglm import ChatGLMConfig
from .visual import EVA2CLIPModel


class RMSNorm(nn.Module):
    def __init__(self, width: int, eps: float) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(variance + self.eps)).to(x.dtype) * self.weight


class SelfAttention(nn.Module):
    def __init__(self, config: ChatGLMConfig, layer_number: int) -> None:
        super().__init__()
        self.layer_number = layer_number
        self.heads = config.num_attention_heads
        self.groups = config.multi_query_group_num if config.multi_query_attention else self.heads
        self.head_dim = config.kv_channels
        width = self.head_dim * (self.heads + 2 * self.groups)
        self.query_key_value = nn.Linear(config.hidden_size, width, bias=config.add_qkv_bias)
        self.dense = nn.Linear(self.head_dim * self.heads, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = self.query_key_value(x)
        q, k, v = qkv.split(
            [self.heads * self.head_dim, self.groups * self.head_dim, self.groups * self.head_dim], dim=-1
        )
        q = q.view(batch, length, self.heads, self.head_dim).transpose(1, 2)
        k = k.view(batch, length, self.groups, self.head_dim).transpose(1, 2)
        v = v.view(batch, length, self.groups, self.head_dim).transpose(1, 2)
        if cache is not None:
            k, v = cache.update(k, v, self.layer_number)
        repeat = self.heads // self.groups
        k = k.repeat_interleave(repeat, dim=1)
        v = v.repeat_interleave(repeat, dim=1)
        attended = functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.dense(attended.transpose(1, 2).reshape(batch, length, -1))


class MLP(nn.Module):
    def __init__(self, config: ChatGLMConfig) -> None:
        super().__init__()
        self.dense_h_to_4h = nn.Linear(config.hidden_size, config.ffn_hidden_size * 2, bias=False)
        self.dense_4h_to_h = nn.Linear(config.ffn_hidden_size, config.hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.dense_h_to_4h(x).chunk(2, dim=-1)
        return self.dense_4h_to_h(functional.silu(gate) * up)


class GLMBlock(nn.Module):
    def __init__(self, config: ChatGLMConfig, layer_number: int) -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.self_attention = SelfAttention(config, layer_number)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, cache) -> torch.Tensor:
        x = x + self.self_attention(self.input_layernorm(x), mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


class GLMTransformer(nn.Module):
    def __init__(self, config: ChatGLMConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(GLMBlock(config, number) for number in range(config.num_layers))
        self.final_layernorm = RMSNorm(config.hidden_size, config.layernorm_epsilon)


class Embedding(nn.Module):
    def __init__(self, config: ChatGLMConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.padded_vocab_size, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.word_embeddings(input_ids)


class ChatGLMPreTrainedModel(PreTrainedModel):
    config_class = ChatGLMConfig
    base_model_prefix = "transformer"
    _no_split_modules = ["GLMBlock"]

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Conv2d):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)
        elif isinstance(module, EVA2CLIPModel):
            nn.init.normal_(module.boi, std=0.02)
            nn.init.normal_(module.eoi, std=0.02)


class ChatGLMModel(ChatGLMPreTrainedModel):
    def __init__(self, config: ChatGLMConfig) -> None:
        super().__init__(config)
        self.embedding = Embedding(config)
        self.position_embedding = nn.Embedding(config.seq_length, config.hidden_size)
        self.encoder = GLMTransformer(config)
        self.output_layer = nn.Linear(config.hidden_size, config.padded_vocab_size, bias=False)
        self.vision = EVA2CLIPModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.embedding.word_embeddings

    def _insert_image(self, input_ids, embeds, attention_mask, images):
        """Replace <|begin_of_image|> placeholder <|end_of_image|> in each row by the image."""
        features = self.vision(images).to(embeds.dtype)
        rows, masks = [], []
        for index in range(input_ids.shape[0]):
            starts = (input_ids[index] == self.config.boi_token_id).nonzero()
            ends = (input_ids[index] == self.config.eoi_token_id).nonzero()
            if len(starts) != 1 or len(ends) != 1 or ends[0, 0] - starts[0, 0] != 2:
                raise ValueError("every row needs exactly one <|begin_of_image|> x <|end_of_image|>")
            start, end = int(starts[0, 0]), int(ends[0, 0])
            rows.append(torch.cat((embeds[index, :start], features[index], embeds[index, end + 1 :])))
            real = attention_mask.new_ones(features.shape[1])
            masks.append(torch.cat((attention_mask[index, :start], real, attention_mask[index, end + 1 :])))
        return torch.stack(rows), torch.stack(masks)

    def forward(self, input_ids, images=None, attention_mask=None, past_key_values=None):
        embeds = self.embedding(input_ids)
        batch = input_ids.shape[0]
        if attention_mask is None:
            attention_mask = input_ids.new_ones(input_ids.shape)
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if images is not None and past == 0:
            embeds, attention_mask = self._insert_image(input_ids, embeds, attention_mask, images)
        length = embeds.shape[1]
        total = past + length
        if attention_mask.shape[1] < total:
            # generate() grows the mask by one per new token over the ids it knows; the image's
            # extra positions are real tokens, and with left padding every padding position is
            # at the start, so the missing entries are ones wherever they sit.
            missing = attention_mask.new_ones(batch, total - attention_mask.shape[1])
            attention_mask = torch.cat((attention_mask, missing), dim=1)
        valid = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)[:, past:]
        hidden = embeds + self.position_embedding(positions).to(embeds.dtype)
        causal = torch.ones(length, total, dtype=torch.bool, device=embeds.device).tril(diagonal=past)
        allowed = causal.unsqueeze(0) & valid.unsqueeze(1)
        # A padding position sees itself, so no row of the softmax is empty (no NaN).
        allowed |= torch.eye(length, total, dtype=torch.bool, device=embeds.device).roll(past, dims=1).unsqueeze(0)
        mask = allowed.unsqueeze(1)
        for layer in self.encoder.layers:
            hidden = layer(hidden, mask, past_key_values)
        return self.encoder.final_layernorm(hidden)


class ChatGLMForConditionalGeneration(ChatGLMPreTrainedModel, GenerationMixin):
    def __init__(self, config: ChatGLMConfig) -> None:
        super().__init__(config)
        self.transformer = ChatGLMModel(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.transformer.embedding.word_embeddings

    def get_output_embeddings(self) -> nn.Module:
        return self.transformer.output_layer

    def forward(
        self,
        input_ids=None,
        images=None,
        attention_mask=None,
        past_key_values=None,
        use_cache=None,
        return_dict=None,
        **kwargs,
    ):
        hidden = self.transformer(
            input_ids, images=images, attention_mask=attention_mask, past_key_values=past_key_values
        )
        logits = self.transformer.output_layer(hidden).float()
        return CausalLMOutputWithPast(logits=logits, past_key_values=past_key_values)

    def prepare_inputs_for_generation(
        self, input_ids, past_key_values=None, attention_mask=None, images=None, use_cache=True, **kwargs
    ):
        # After the first step the cache holds the prompt and the image: only the newest id goes in.
        if past_key_values is not None and past_key_values.get_seq_length() > 0:
            input_ids = input_ids[:, -1:]
            images = None
        return {
            "input_ids": input_ids,
            "images": images,
            "attention_mask": attention_mask,
            "past_key_values": past_key_values,
            "use_cache": use_cache,
        }

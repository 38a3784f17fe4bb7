"""Configuration of the GLM-4V-9B stand-in (test code written for this platform, not THUDM's).

The field names mirror the published ``configuration_chatglm.ChatGLMConfig`` so the loader and
the engine meet the same config a real GLM-4V-9B directory has; the model behind it is tiny.
"""

from transformers import PretrainedConfig


class ChatGLMConfig(PretrainedConfig):
    model_type = "chatglm"
    # transformers' generic code (the KV cache) asks for num_hidden_layers.
    attribute_map = {"num_hidden_layers": "num_layers"}

    def __init__(
        self,
        num_layers=2,
        padded_vocab_size=1024,
        hidden_size=128,
        ffn_hidden_size=256,
        kv_channels=32,
        num_attention_heads=4,
        seq_length=2048,
        layernorm_epsilon=1e-5,
        rmsnorm=True,
        add_qkv_bias=True,
        multi_query_attention=True,
        multi_query_group_num=2,
        vision_config=None,
        boi_token_id=None,
        eoi_token_id=None,
        **kwargs,
    ):
        self.num_layers = num_layers
        self.padded_vocab_size = padded_vocab_size
        self.vocab_size = padded_vocab_size
        self.hidden_size = hidden_size
        self.ffn_hidden_size = ffn_hidden_size
        self.kv_channels = kv_channels
        self.num_attention_heads = num_attention_heads
        self.seq_length = seq_length
        self.layernorm_epsilon = layernorm_epsilon
        self.rmsnorm = rmsnorm
        self.add_qkv_bias = add_qkv_bias
        self.multi_query_attention = multi_query_attention
        self.multi_query_group_num = multi_query_group_num
        # A plain dict, as in the published config.json (image_size, patch_size, ...).
        self.vision_config = dict(vision_config or {})
        self.boi_token_id = boi_token_id
        self.eoi_token_id = eoi_token_id
        super().__init__(**kwargs)

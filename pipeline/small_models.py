"""The small models trained from scratch when no backbone is given: the config values of each
architecture (`model.small` changes single values)."""

SMALL_MODELS = {
    # raw waveform, a convolutional feature encoder (layer norm: it takes an attention mask)
    "wav2vec2": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "conv_dim": [32, 32, 32, 32, 32, 32, 32],
        "num_conv_pos_embeddings": 16,
        "num_conv_pos_embedding_groups": 4,
        "feat_extract_norm": "layer",
        "classifier_proj_size": 64,
        "mask_time_prob": 0.0,
    },
    # 80 log-mel filter banks (two frames stacked), conformer layers
    "wav2vec2-bert": {
        "hidden_size": 96,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "intermediate_size": 192,
        "conv_depthwise_kernel_size": 15,
        "left_max_position_embeddings": 64,
        "right_max_position_embeddings": 8,
        "classifier_proj_size": 64,
        "layerdrop": 0.0,
        "mask_time_prob": 0.0,
    },
}

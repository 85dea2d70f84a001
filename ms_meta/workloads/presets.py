"""Layer presets of real models and named tasks (the seed records' names among them)."""

from __future__ import annotations

__all__ = [
    "NAMED",
    "PRESETS",
]


def _conv(c, hw, k, rs, stride, pad):
    return f"conv2d_nchw:1,{c},{hw},{hw},{k},{rs},{rs},{stride},{pad}"


def _dw(c, hw, stride):
    return f"depthwise_conv2d:1,{c},{hw},{hw},3,3,{stride},1"


def _pw(c, hw, k):
    return _conv(c, hw, k, 1, 1, 0)


# Each preset lists the distinct tuning tasks of one model (batch 1, 224x224 images, BERT at
# sequence length 128); repeated identical layers appear once.
PRESETS: dict[str, tuple[str, ...]] = {
    "resnet18": (
        _conv(3, 224, 64, 7, 2, 3),
        "max_pool2d:1,64,112,112,3,2,1",
        _conv(64, 56, 64, 3, 1, 1),
        _conv(64, 56, 128, 3, 2, 1),
        _conv(128, 28, 128, 3, 1, 1),
        _conv(64, 56, 128, 1, 2, 0),
        _conv(128, 28, 256, 3, 2, 1),
        _conv(256, 14, 256, 3, 1, 1),
        _conv(128, 28, 256, 1, 2, 0),
        _conv(256, 14, 512, 3, 2, 1),
        _conv(512, 7, 512, 3, 1, 1),
        _conv(256, 14, 512, 1, 2, 0),
        "global_avg_pool:1,512,7,7",
        "dense:1,1000,512",
    ),
    "resnet50": (
        _conv(3, 224, 64, 7, 2, 3),
        "max_pool2d:1,64,112,112,3,2,1",
        _pw(64, 56, 64),
        _conv(64, 56, 64, 3, 1, 1),
        _pw(64, 56, 256),
        _pw(256, 56, 64),
        _pw(256, 56, 128),
        _conv(128, 56, 128, 3, 2, 1),
        _pw(128, 28, 512),
        _conv(256, 56, 512, 1, 2, 0),
        _pw(512, 28, 128),
        _conv(128, 28, 128, 3, 1, 1),
        _pw(512, 28, 256),
        _conv(256, 28, 256, 3, 2, 1),
        _pw(256, 14, 1024),
        _conv(512, 28, 1024, 1, 2, 0),
        _pw(1024, 14, 256),
        _conv(256, 14, 256, 3, 1, 1),
        _pw(1024, 14, 512),
        _conv(512, 14, 512, 3, 2, 1),
        _pw(512, 7, 2048),
        _conv(1024, 14, 2048, 1, 2, 0),
        _pw(2048, 7, 512),
        _conv(512, 7, 512, 3, 1, 1),
        "global_avg_pool:1,2048,7,7",
        "dense:1,1000,2048",
    ),
    "mobilenetv2": (
        _conv(3, 224, 32, 3, 2, 1),
        _dw(32, 112, 1),
        _pw(32, 112, 16),
        _pw(16, 112, 96),
        _dw(96, 112, 2),
        _pw(96, 56, 24),
        _pw(24, 56, 144),
        _dw(144, 56, 1),
        _pw(144, 56, 24),
        _dw(144, 56, 2),
        _pw(144, 28, 32),
        _pw(32, 28, 192),
        _dw(192, 28, 1),
        _pw(192, 28, 32),
        _dw(192, 28, 2),
        _pw(192, 14, 64),
        _pw(64, 14, 384),
        _dw(384, 14, 1),
        _pw(384, 14, 64),
        _pw(384, 14, 96),
        _pw(96, 14, 576),
        _dw(576, 14, 1),
        _pw(576, 14, 96),
        _dw(576, 14, 2),
        _pw(576, 7, 160),
        _pw(160, 7, 960),
        _dw(960, 7, 1),
        _pw(960, 7, 160),
        _pw(960, 7, 320),
        _pw(320, 7, 1280),
        "global_avg_pool:1,1280,7,7",
        "dense:1,1000,1280",
    ),
    "bert-base": (
        "dense:128,768,768",
        "dense:128,2304,768",
        "batch_matmul:12,128,128,64",
        "softmax:12,128,128",
        "batch_matmul:12,128,64,128",
        "dense:128,3072,768",
        "dense:128,768,3072",
        "layer_norm:128,768",
    ),
    # BERT-base's matmuls in the layout TVM's Relax PyTorch frontend produces: weights [K, N]
    # with the bias add fused, attention as [B, M, K] x [B, K, N] (see ms_meta.networks.bert).
    "bert-relax": (
        "matmul_bias:128,768,768",
        "matmul_bias:128,3072,768",
        "matmul_bias:128,768,3072",
        "batch_matmul_nn:12,128,128,64",
        "batch_matmul_nn:12,128,64,128",
    ),
    # More shapes of the operators the model presets use rarely, for a data set that covers
    # every operator kind with several shapes.
    "extra": (
        "conv2d_nhwc:1,28,28,128,128,3,3,1,1",
        "conv2d_nhwc:1,7,7,512,512,3,3,1,1",
        "conv2d_nhwc:1,56,56,64,256,1,1,1,0",
        "conv2d_nhwc:1,112,112,32,64,3,3,2,1",
        "conv2d_bias_relu:1,128,28,28,128,3,3,1,1",
        "conv2d_bias_relu:1,3,224,224,64,7,7,2,3",
        "conv2d_bias_relu:1,512,7,7,512,3,3,1,1",
        "conv2d_bias_relu:1,256,56,56,64,1,1,1,0",
        "depthwise_conv2d:1,64,56,56,3,3,1,1",
        "depthwise_conv2d:1,256,28,28,3,3,2,1",
        "batch_matmul:16,128,128,32",
        "batch_matmul:1,512,512,64",
        "batch_matmul:8,64,256,64",
        "dense:16,4096,1024",
        "dense:256,1024,1024",
        "dense:32,1000,512",
        "softmax:16,256,256",
        "softmax:1,1000",
        "softmax:8,64,64",
        "layer_norm:64,768",
        "layer_norm:256,1024",
        "layer_norm:512,512",
        "max_pool2d:1,128,28,28,2,2,0",
        "avg_pool2d:1,256,28,28,2,2,0",
        "avg_pool2d:1,64,56,56,3,1,1",
        "global_avg_pool:1,256,14,14",
        "matmul_bias:64,2304,768",
        "matmul_bias:256,1024,1024",
        "matmul_bias:1,1000,512",
        "batch_matmul_nn:16,256,64,256",
        "batch_matmul_nn:8,64,64,256",
    ),
}


def _blocked(spec: str) -> str | None:
    """The NCHW16c form of a plain NCHW convolution whose output channels split into
    16-channel blocks, as a network prepared with ``blocked=True`` runs it (input channels
    that do not split form one block: the first convolution); None for any other task."""
    op, _, values = spec.partition(":")
    fields = [int(v) for v in values.split(",")]
    if op != "conv2d_nchw" or fields[4] % 16:
        return None
    return f"conv2d_nchwc:{values}"


# the convolutions of the ResNets in the blocked layout (ms_meta.one_shot.blocked)
for _name in ("resnet18", "resnet50"):
    PRESETS[f"{_name}-blocked"] = tuple(
        b for b in (_blocked(s) for s in PRESETS[_name]) if b is not None
    )


def _blocked_depthwise(spec: str) -> str | None:
    """The NCHW16c form of a depthwise convolution whose channels split into 16-channel
    blocks (ms_meta.one_shot.blocked_depthwise); None for any other task."""
    op, _, values = spec.partition(":")
    if op != "depthwise_conv2d" or int(values.split(",")[1]) % 16:
        return None
    return f"depthwise_conv2d_nchwc:{values}"


# MobileNetV2 in the blocked layout: its depthwise convolutions first, then the convolutions
# whose output channels split into blocks (the stem and the 24-channel input ones take all
# their input channels as one block)
PRESETS["mobilenet-v2-blocked"] = tuple(
    b for b in (_blocked_depthwise(s) for s in PRESETS["mobilenetv2"]) if b is not None
) + tuple(b for b in (_blocked(s) for s in PRESETS["mobilenetv2"]) if b is not None)

# Short names for single tasks; the seed records (../shared/seed_records) use these.
NAMED: dict[str, str] = {
    "r18_c1_3x3_64": "conv2d_nchw:1,64,56,56,64,3,3,1,1",
    "r18_c2_3x3_s2": "conv2d_nchw:1,64,56,56,128,3,3,2,1",
    "r18_c3_3x3_128": "conv2d_nchw:1,128,28,28,128,3,3,1,1",
    "r18_c4_3x3_s2": "conv2d_nchw:1,128,28,28,256,3,3,2,1",
    "r18_c5_3x3_256": "conv2d_nchw:1,256,14,14,256,3,3,1,1",
    "r18_c7_3x3_512": "conv2d_nchw:1,512,7,7,512,3,3,1,1",
    "r18_ds_1x1_s2": "conv2d_nchw:1,128,28,28,256,1,1,2,0",
    "r18_stem_7x7": "conv2d_nchw:1,3,224,224,64,7,7,2,3",
    "r50_1x1_256_64": "conv2d_nchw:1,256,56,56,64,1,1,1,0",
    "r50_1x1_64_256": "conv2d_nchw:1,64,56,56,256,1,1,1,0",
    "r50_1x1_1024_256": "conv2d_nchw:1,1024,14,14,256,1,1,1,0",
    "r50_1x1_2048_512": "conv2d_nchw:1,2048,7,7,512,1,1,1,0",
    "r18_cbr_3x3_64": "conv2d_bias_relu:1,64,56,56,64,3,3,1,1",
    "r18_cbr_3x3_256": "conv2d_bias_relu:1,256,14,14,256,3,3,1,1",
    "nhwc_3x3_64": "conv2d_nhwc:1,56,56,64,64,3,3,1,1",
    "nhwc_3x3_256": "conv2d_nhwc:1,14,14,256,256,3,3,1,1",
    "nhwc_1x1_512": "conv2d_nhwc:1,28,28,512,128,1,1,1,0",
    "mbv2_dw_32_112": "depthwise_conv2d:1,32,112,112,3,3,1,1",
    "mbv2_dw_96_s2": "depthwise_conv2d:1,96,112,112,3,3,2,1",
    "mbv2_dw_144_56": "depthwise_conv2d:1,144,56,56,3,3,1,1",
    "mbv2_dw_384_14": "depthwise_conv2d:1,384,14,14,3,3,1,1",
    "mbv2_dw_960_7": "depthwise_conv2d:1,960,7,7,3,3,1,1",
    "mbv2_pw_32_16": "conv2d_nchw:1,32,112,112,16,1,1,1,0",
    "mbv2_pw_144_24": "conv2d_nchw:1,144,56,56,24,1,1,1,0",
    "bert_qkv": "dense:128,768,768",
    "bert_ffn1": "dense:128,3072,768",
    "bert_ffn2": "dense:128,768,3072",
    "gpt2_qkv": "dense:64,2304,768",
    "resnet_fc": "dense:1,1000,2048",
    "mm_512": "dense:512,512,512",
    "mm_1024": "dense:1024,1024,1024",
    "bert_attn_qk": "batch_matmul:12,128,128,64",
    "bert_attn_v": "batch_matmul:12,128,64,128",
    "bmm_16_256": "batch_matmul:16,256,256,64",
    "softmax_bert": "softmax:12,128,128",
    "layernorm_bert": "layer_norm:128,768",
    "maxpool_r18": "max_pool2d:1,64,112,112,3,2,1",
    "gap_r50": "global_avg_pool:1,2048,7,7",
}

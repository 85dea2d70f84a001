"""Networks of the end-to-end benchmark (ResNet-18, ResNet-50, a BERT-base layer, MobileNetV2, a
small conv net) and their Relax import."""

from __future__ import annotations

from ms_meta.networks.bert import BertLayer, bert_layer, bert_layer_inputs
from ms_meta.networks.mobilenet import MobileNetV2, mobilenet_v2, mobilenet_v2_inputs
from ms_meta.networks.registry import MODELS, ModelSpec, UnknownModelError, load_model, model_spec
from ms_meta.networks.resnet import ResNet, resnet18, resnet18_inputs, resnet50, resnet50_inputs
from ms_meta.networks.small import small_convnet, small_convnet_inputs

__all__ = [
    "MODELS",
    "BertLayer",
    "MobileNetV2",
    "ModelImportError",
    "ModelSpec",
    "ResNet",
    "UnknownModelError",
    "bert_layer",
    "bert_layer_inputs",
    "bind_for_inference",
    "fuse_for_tuning",
    "import_model",
    "import_torch_module",
    "load_model",
    "mobilenet_v2",
    "mobilenet_v2_inputs",
    "model_spec",
    "resnet18",
    "resnet18_inputs",
    "resnet50",
    "resnet50_inputs",
    "small_convnet",
    "small_convnet_inputs",
]

_IMPORTER_NAMES = (
    "ModelImportError",
    "bind_for_inference",
    "fuse_for_tuning",
    "import_model",
    "import_torch_module",
)


def __getattr__(name: str):
    # The Relax importer needs TVM (seconds to import); the networks themselves need only torch.
    if name in _IMPORTER_NAMES:
        from ms_meta.networks import importer

        return getattr(importer, name)
    raise AttributeError(f"module 'ms_meta.networks' has no attribute {name!r}")

"""PyTorch models into Relax: ``torch.export`` plus TVM's exported-program frontend."""

from __future__ import annotations

import logging
import warnings

import torch
import tvm
from torch import nn
from tvm import relax
from tvm.relax.frontend import detach_params
from tvm.relax.frontend.torch import from_exported_program

from ms_meta.errors import MsMetaError
from ms_meta.networks.registry import load_model

logger = logging.getLogger(__name__)

Params = dict[str, tvm.runtime.Tensor]


class ModelImportError(MsMetaError):
    """A PyTorch model that ``torch.export`` or TVM's Relax frontend cannot translate."""


def import_torch_module(
    module: nn.Module, example_inputs: tuple[torch.Tensor, ...]
) -> tuple[tvm.IRModule, Params]:
    """Translate an eval-mode module into a Relax ``IRModule`` and its weights.

    The weights stay parameters of ``main`` (after the model inputs, as ``num_input`` says),
    so the module is small and the weights can be bound later; ``params`` maps each weight
    parameter's name to its value, the form ``BindParams`` and MetaSchedule's ``tune_relax``
    / ``compile_relax`` take. A single output is returned bare, not as a 1-tuple.

    Raises
    ------
    ModelImportError
        When ``torch.export`` or the frontend fails; the message names the stage.
    """
    module = module.eval()
    with warnings.catch_warnings():
        # torch's pytree internals warn about their own deprecations (LeafSpec) on export
        # and again when the frontend decomposes the exported program
        warnings.simplefilter("ignore", FutureWarning)
        try:
            exported = torch.export.export(module, tuple(example_inputs))
        except Exception as err:
            raise ModelImportError(
                f"torch.export could not trace {type(module).__name__}: {err}"
            ) from err
        try:
            mod = from_exported_program(
                exported, keep_params_as_input=True, unwrap_unit_return_tuple=True
            )
        except Exception as err:
            text = str(err).strip()
            first_line = text.splitlines()[0] if text else type(err).__name__
            raise ModelImportError(
                f"TVM's Relax frontend could not translate {type(module).__name__}: {first_line}"
            ) from err
    mod, detached = detach_params(mod)
    main = mod["main"]
    num_inputs = int(main.attrs["num_input"])
    weights = list(detached.get("main", []))
    weight_vars = list(main.params)[num_inputs:]
    if len(weights) != len(weight_vars):  # pragma: no cover - frontend contract
        raise ModelImportError(
            f"the frontend returned {len(weights)} weights for {len(weight_vars)} weight parameters"
        )
    return mod, {var.name: value for var, value in zip(weight_vars, weights, strict=True)}


def import_model(name: str) -> tuple[tvm.IRModule, Params, tuple[torch.Tensor, ...]]:
    """The benchmark model ``name`` as a Relax module, its weights and its example inputs.

    See :func:`import_torch_module` for the form of the module and weights; unknown names raise
    :class:`~ms_meta.networks.registry.UnknownModelError`.
    """
    module, example_inputs = load_model(name)
    mod, params = import_torch_module(module, example_inputs)
    return mod, params, example_inputs


def bind_for_inference(mod: tvm.IRModule, params: Params | None) -> tvm.IRModule:
    """Bind the weights as constants and rewrite training-form ops for inference, as One-Shot
    does (:func:`ms_meta.one_shot.prepare_for_inference`: batch norm folded into the
    convolution before it, the rest decomposed into elementwise ops that ``FuseOps`` merges
    into the kernel before them). Every compile path of the benchmark starts from this module,
    so MetaSchedule's database keys match between tuning and compiling. Convolutions keep the
    layout the model was written in: ``blocked=False``, since MetaSchedule's own
    ``compile_relax`` legalizes only the plain layouts; weights stay unpacked
    (``layout_free=False``), since it does not fold a schedule's weight packing either.
    """
    from ms_meta.one_shot.relax import prepare_for_inference

    return prepare_for_inference(mod, params, blocked=False, layout_free=False)


def fuse_for_tuning(mod: tvm.IRModule) -> tvm.IRModule:
    """Legalize and fuse (Relax's ``zero`` pipeline, as ``compile_relax`` does internally).

    MetaSchedule's task extraction only collects ``call_tir`` kernels, so it finds no tasks in
    a module of high-level Relax ops; tune this module and compile the unfused one.
    """
    return relax.get_pipeline("zero")(mod)

"""Where activations come from: one base model's residual stream after block K, and its width.

The NLA, the SAE baseline, activation datasets and the evals all read a site, and any comparison between two
of them is only meaningful when they read the same one: an SAE trained on layer 12 explains nothing about
layer 20. ``Site`` is that identity and ``check_same_site`` the one check, so every reader refuses a mismatch
with the same message. Models are compared by ``model_key`` (an embedded alias is the hub id, and a hub id
matches a local copy of it), so two spellings of one model never make the check refuse.

Layer K follows the project convention: the output of block K, HF ``hidden_states[K+1]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nla_audit.errors import InputError, SidecarError


def model_key(name: str) -> str:
    """Compare models by their last path component, so a hub id and a local copy of it match (and every
    embedded alias is the embedded model's hub id first)."""
    from nla_audit import embedded

    name = embedded.HUB_ID if str(name) in embedded.ALIASES else str(name)
    return name.rstrip("/").rsplit("/", 1)[-1].lower()


@dataclass(frozen=True)
class Site:
    """Where activations come from: block K's output of one base model (d_model when known)."""

    base_model: str
    layer: int
    d_model: int | None = None

    @property
    def hook_name(self) -> str:
        """SAELens / TransformerLens name of the same site."""
        return f"blocks.{self.layer}.hook_resid_post"

    @property
    def width(self) -> int:
        """``d_model``, which every use past reading a sidecar needs: one clear line when it is unknown."""
        if self.d_model is None:
            raise InputError(f"the width (d_model) of {self.base_model} layer {self.layer} is unknown",
                             fix="re-extract the activations with nla-audit extract (its sidecar records d_model)")
        return self.d_model

    def __str__(self) -> str:
        return f"{self.base_model} layer {self.layer}" + (f" (d_model {self.d_model})" if self.d_model else "")

    def same_as(self, other: Site) -> bool:
        dims_agree = self.d_model is None or other.d_model is None or self.d_model == other.d_model
        return model_key(self.base_model) == model_key(other.base_model) and self.layer == other.layer and dims_agree

    @classmethod
    def from_dataset_meta(cls, meta: dict) -> Site:
        ext = meta.get("extraction") or {}
        try:
            return cls(str(ext["base_model"]), int(ext["layer_index"]), int(ext["d_model"]))
        except (KeyError, TypeError, ValueError):
            raise SidecarError(f"dataset sidecar {meta.get('dataset_id', '?')} lacks extraction.base_model/"
                               "layer_index/d_model", fix="re-extract with `nla-audit extract`") from None

    @classmethod
    def of(cls, obj: Any) -> tuple[Site, str]:
        """(site, a name for messages) of an explainer, a dataset sidecar dict, a parquet path, a Site or a
        (model, layer) tuple."""
        if isinstance(obj, Site):
            return obj, "site"
        if isinstance(obj, dict):
            return cls.from_dataset_meta(obj), f"dataset {obj.get('dataset_id', '?')}"
        if isinstance(obj, (str, Path)):
            from nla_audit.sidecar import read_dataset_sidecar

            return cls.from_dataset_meta(read_dataset_sidecar(obj)), f"dataset {obj}"
        if isinstance(obj, tuple) and len(obj) == 2:
            return cls(str(obj[0]), int(obj[1])), "site"
        if hasattr(obj, "site"):
            model, layer = obj.site
            return cls(model, int(layer), getattr(obj, "d_model", None)), f"explainer {getattr(obj, 'name', '?')}"
        raise TypeError(f"cannot read a site from {type(obj).__name__}")


def check_same_site(a: Any, b: Any) -> Site:
    """Refuse to compare two explainers (or an explainer and a dataset) that read different sites.

    Args:
        a, b: an ``Explainer``, a dataset sidecar dict, an activation parquet path, a ``Site`` or a
            ``(base model, layer)`` tuple.

    Returns:
        The common site (of ``a``).

    Raises:
        InputError: the base models, layers or widths differ.
    """
    (site_a, name_a), (site_b, name_b) = Site.of(a), Site.of(b)
    if not site_a.same_as(site_b):
        raise InputError(f"site mismatch: {name_a} reads {site_a} but {name_b} reads {site_b}",
                         expected="the same base model and layer K (output of block K) on both sides",
                         fix=f"train the SAE on activations extracted at layer {site_b.layer} of {site_b.base_model} "
                             "(nla-audit extract --layer K, then nla-audit sae train)")
    return site_a

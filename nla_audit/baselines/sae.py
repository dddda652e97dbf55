"""The SAE baseline: its folder format, and the SAE as an ``Explainer`` (its site is ``nla_audit.site``).

An SAE folder is SAELens's own inference format (``cfg.json`` + ``sae_weights.safetensors``; it loads with
``sae_lens.SAE.load_from_disk``) plus small nla_audit files next to it:

* ``sae_meta.yaml``: the site (base model, layer K, d_model, SAELens hook name ``blocks.{K}.hook_resid_post``),
  the datasets it was trained on and the training config. Without it an SAE trained on layer 12 could not be
  told from one trained on layer 20, and a comparison with the NLA would silently read two different sites;
* ``metrics.json``: held-out reconstruction metrics (``sae_train``);
* ``labels.json``: one auto-interpretation label per latent (``sae_labels``).

Layer K follows the project convention: the output of block K, HF ``hidden_states[K+1]``. ``sae_lens`` takes
about 9 s to import, so it is imported only inside the functions that need it.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml

from nla_audit.errors import InputError, SidecarError
from nla_audit.site import Site, check_same_site  # noqa: F401  (check_same_site re-exported for SAE users)

META_NAME = "sae_meta.yaml"
METRICS_NAME = "metrics.json"
SAELENS_FILES = ("cfg.json", "sae_weights.safetensors")
SHIPPED_NAME = "smollm2-135m-instruct-L20"  # the SAE shipped for the embedded default model, if any


def import_sae_lens() -> Any:
    """``sae_lens``, or one clear line saying which extra installs it."""
    try:
        import sae_lens
    except ImportError:
        raise InputError("the SAE baseline needs sae-lens, which is not installed",
                         fix="pip install 'nla_audit[sae]'") from None
    return sae_lens


# ----------------------------------------------------------------------------------------------- folders
def default_sae_dir() -> Path | None:
    """The SAE shipped for the embedded default model, or None when none is installed."""
    from nla_audit.paths import PACKAGE_DATA

    path = PACKAGE_DATA / "sae" / SHIPPED_NAME
    return path if (path / META_NAME).exists() else None


def resolve_sae_dir(path: str | Path) -> Path:
    """An existing SAE folder ('default' = the shipped one), or one clear line saying what is missing."""
    if str(path) == "default":
        found = default_sae_dir()
        if found is None:
            raise InputError("no default SAE is installed",
                             fix="build it with `nla-audit sae train` + `nla-audit sae label` "
                                 "(docs/sae.md, 'Shipped default')")
        return found
    path = Path(path)
    if not path.is_dir():
        raise InputError(f"SAE folder {path} does not exist", expected="a folder written by `nla-audit sae train`",
                         fix="check the path, or train one with `nla-audit sae train --data ... --out DIR`")
    missing = [f for f in SAELENS_FILES if not (path / f).exists()]
    if missing:
        raise InputError(f"{path} is not an SAELens SAE folder (missing {', '.join(missing)})",
                         expected="cfg.json + sae_weights.safetensors",
                         fix="point at the folder `nla-audit sae train` wrote")
    return path


def write_sae_meta(path: Path, site: Site, d_sae: int, datasets: list[str], config: dict) -> None:
    from nla_audit.sidecar import now_iso

    meta = {"kind": "nla_sae", "schema_version": 1, "base_model": site.base_model, "layer_index": site.layer,
            "hidden_states_index": site.layer + 1, "d_model": site.d_model, "d_sae": d_sae,
            "hook_name": site.hook_name, "datasets": datasets, "config": config, "created_at": now_iso(),
            "created_by": "nla_audit.baselines.sae_train"}
    (path / META_NAME).write_text(yaml.safe_dump(meta, sort_keys=False, allow_unicode=True), encoding="utf-8")


def read_sae_meta(path: Path) -> dict:
    """``sae_meta.yaml``; for an SAELens folder without one, the site from its ``cfg.json`` metadata."""
    meta_path = path / META_NAME
    if not meta_path.exists():
        return _meta_from_saelens_cfg(path)
    try:
        meta = yaml.safe_load(meta_path.read_text(encoding="utf-8"))
        Site(str(meta["base_model"]), int(meta["layer_index"]), int(meta["d_model"]))
    except (yaml.YAMLError, UnicodeDecodeError, KeyError, TypeError, ValueError) as exc:
        raise SidecarError(f"{meta_path} is malformed ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                           expected="base_model, layer_index, d_model",
                           fix="retrain with `nla-audit sae train`") from None
    return meta


def _meta_from_saelens_cfg(path: Path) -> dict:
    try:
        cfg = json.loads((path / "cfg.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}/cfg.json is not valid JSON ({str(exc).splitlines()[0]})",
                         fix="retrain with `nla-audit sae train`") from None
    md = cfg.get("metadata") or {}
    m = re.fullmatch(r"blocks\.(\d+)\.hook_resid_post", str(md.get("hook_name", "")))
    if not (m and md.get("model_name")):
        raise SidecarError(f"{path} has no {META_NAME} and its cfg.json names no residual site "
                           f"(metadata.model_name={md.get('model_name')!r}, hook_name={md.get('hook_name')!r})",
                           expected="blocks.K.hook_resid_post",
                           fix=f"add a {META_NAME} (base_model, layer_index, d_model)")
    return {"base_model": md["model_name"], "layer_index": int(m.group(1)), "d_model": cfg.get("d_in")}


def load_sae(path: str | Path, device: str = "cpu") -> tuple[Any, dict, Path]:
    """(SAELens SAE in float32 in eval mode, its meta, its folder); every failure is one clear line."""
    path = resolve_sae_dir(path)
    meta = read_sae_meta(path)
    sae_lens = import_sae_lens()
    try:
        sae = sae_lens.SAE.load_from_disk(str(path), device=device, dtype="float32")
    except Exception as exc:  # malformed cfg.json / safetensors, unknown architecture: SAELens raises many kinds
        raise InputError(f"SAELens cannot load {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
                         fix="retrain with `nla-audit sae train`") from None
    if meta.get("d_model") is not None and int(meta["d_model"]) != sae.cfg.d_in:
        raise SidecarError(f"{path}: {META_NAME} says d_model {meta['d_model']} but the SAE reads d_in {sae.cfg.d_in}",
                           fix="retrain with `nla-audit sae train`")
    return sae.eval(), meta, path


def check_vectors(vectors: Any, d_in: int, what: str = "vectors") -> torch.Tensor:
    """[n, d_in] finite float32, or one clear line."""
    v = torch.as_tensor(vectors).float()
    v = v[None] if v.dim() == 1 else v
    if v.dim() != 2 or v.shape[1] != d_in:
        raise InputError(f"{what} have shape {tuple(v.shape)}", expected=f"[n, {d_in}] (d_in of this SAE)",
                         fix="use activations from the SAE's own model and layer")
    if not torch.isfinite(v).all():
        raise InputError(f"{what} contain NaN or inf", expected="finite activations")
    return v


# ----------------------------------------------------------------------------------------------- explainer
class SAEExplainer:
    """An activation explained by its top active SAE latents, each with its label and activation.

    Labels come from ``labels.json`` (``nla-audit sae label``); without it the explainer still works but says
    so, both as a Python warning at load and as the first line of every explanation.
    """

    name = "sae"

    def __init__(self, sae: Any, site: Site, labels: dict[int, str | None] | None, source: str = "",
                 top_n: int = 8) -> None:
        self.sae, self._site, self.labels, self.source, self.top_n = sae, site, labels, source, top_n
        self.warning = None
        if not labels:
            self.warning = (f"the SAE in {source or '?'} has no latent labels (labels.json); explanations list "
                            f"unlabelled latent ids; fix: nla-audit sae label --sae {source or 'DIR'} --data PARQUET")
            warnings.warn(self.warning, stacklevel=2)

    @classmethod
    def from_dir(cls, path: str | Path = "default", top_n: int = 8, device: str = "cpu") -> SAEExplainer:
        from nla_audit.baselines.sae_files import read_labels

        sae, meta, folder = load_sae(path, device)
        site = Site(str(meta["base_model"]), int(meta["layer_index"]), sae.cfg.d_in)
        return cls(sae, site, read_labels(folder, sae.cfg.d_sae), str(folder), top_n)

    @property
    def site(self) -> tuple[str, int]:
        return self._site.base_model, self._site.layer

    @property
    def d_model(self) -> int:
        return self.sae.cfg.d_in

    @torch.no_grad()
    def encode(self, vectors: Any) -> torch.Tensor:
        """Latent activations [n, d_sae] of raw activations [n, d_model]."""
        v = check_vectors(vectors, self.sae.cfg.d_in)
        return self.sae.encode(v.to(self.sae.device))

    def top_latents(self, vectors: Any, top_n: int | None = None) -> list[list[tuple[int, float]]]:
        """Per row, up to ``top_n`` (latent, activation) pairs with activation > 0, strongest first."""
        acts = self.encode(vectors).float().cpu()
        vals, idx = acts.topk(min(top_n or self.top_n, acts.shape[1]), dim=1)
        return [[(int(i), float(a)) for i, a in zip(ri, rv) if a > 0] for ri, rv in zip(idx.tolist(), vals.tolist())]

    def label(self, latent: int) -> str:
        if not self.labels:
            return "(unlabelled)"
        text = self.labels.get(latent)
        return text if text else "(no label: never active on the labelling data)"

    def describe(self, vectors: Any, top_n: int | None = None, **_: Any) -> list[str]:
        """One text per row: its top active latents as ``#id (activation) label`` lines."""
        out = []
        for row in self.top_latents(vectors, top_n):
            lines = [f"[warning: {self.warning}]"] if self.warning else []
            if not row:
                lines.append("no SAE latent is active on this activation")
            lines += [f"#{i} ({a:.2f}) {self.label(i)}" for i, a in row]
            out.append("\n".join(lines))
        return out

"""The ``nla_meta.yaml`` sidecars: the one module that knows their schema.

Two kinds, both compatible with the reference implementation's files:

* dataset sidecar (``kind: nla_dataset``, ``schema_version: 1``) at ``{parquet}.nla_meta.yaml``;
* model sidecar (``kind: nla_model``, ``schema_version: 2``) at ``{checkpoint}/nla_meta.yaml``.

Readers accept both key spellings (``av``/``actor``, ``ar``/``critic``) and K from any of its three places;
writers use the release spelling (``av``/``ar``) and also write K in every place a reader may look. Unknown
keys are ignored on read, so nla_audit's additions (FVE baselines, adapter info) do not break other readers.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from nla_audit.atomic import atomic_write_text
from nla_audit.errors import InputError, SidecarError

SIDECAR_NAME = "nla_meta.yaml"
VALUE_HEAD_FILE = "value_head.safetensors"  # the AR's Linear(d, d) head, beside its sidecar
INJECT_PLACEHOLDER = "<INJECT>"

# Contract strings, verbatim from the reference code: they ship in every sidecar.
AV_TEMPLATE = (
    "You are a meticulous AI researcher conducting an important investigation into activation vectors from a "
    "language model. Your overall task is to describe the semantic content of that activation vector.\n\n"
    "We will pass the vector enclosed in <concept> tags into your context. You must then produce an "
    "explanation for the vector, enclosed within <explanation> tags. The explanation consists of 2-3 text "
    "snippets describing that vector.\n\n"
    "Here is the vector:\n\n"
    "<concept>{injection_char}</concept>\n\n"
    "Please provide an explanation."
)
AR_TEMPLATE = "Summary of the following text: <text>{explanation}</text> <summary>"

# FVE denominators published with the released checkpoints, used when a released
# sidecar carries none: (base model, K) → B_rv.
KNOWN_BASELINES = {
    ("Qwen/Qwen2.5-7B-Instruct", 20): 0.7335,
    ("google/gemma-3-12b-it", 32): 0.0302,
    ("google/gemma-3-27b-it", 41): 0.0579,
    ("meta-llama/Llama-3.3-70B-Instruct", 53): 0.9169,
}


def now_iso() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _load_yaml(path: Path) -> dict:
    if not path.exists():
        raise SidecarError(f"sidecar {path} is missing",
                           expected=f"an {SIDECAR_NAME} next to the data/checkpoint",
                           fix="point at a folder written by nla-audit (or the reference pipeline)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SidecarError(f"sidecar {path} is not valid YAML ({str(exc).splitlines()[0]})",
                           fix="restore the file from the checkpoint") from None
    if not isinstance(data, dict):
        raise SidecarError(f"sidecar {path} is not a mapping", expected="YAML key: value pairs")
    return data


def _dump(data: dict) -> str:
    clean = {k: v for k, v in data.items() if v is not None}
    return yaml.safe_dump(clean, sort_keys=False, allow_unicode=True, width=10_000)


# ----------------------------------------------------------------------------------------------- datasets
def dataset_sidecar_path(parquet: str | Path) -> Path:
    """``{parquet}.nla_meta.yaml``, with any ``@[a:b]`` slice suffix removed."""
    return Path(re.sub(r"@\[[^\]]*\]$", "", str(parquet)) + "." + SIDECAR_NAME)


def write_dataset_sidecar(parquet: str | Path, meta: dict) -> Path:
    data = {"kind": "nla_dataset", "schema_version": 1, **meta}
    data.setdefault("created_at", now_iso())
    data.setdefault("created_by", "nla_audit")
    path = dataset_sidecar_path(parquet)
    atomic_write_text(path, _dump(data))
    return path


def read_dataset_sidecar(parquet: str | Path) -> dict:
    if not Path(parquet).exists():  # say what is missing: the data, not (only) its sidecar
        raise InputError(f"data file {parquet} does not exist",
                         fix="check the path; extract with `nla-audit extract`, or make training data with `nla-audit datagen`")
    path = dataset_sidecar_path(parquet)
    data = _load_yaml(path)
    if data.get("kind") != "nla_dataset" or data.get("schema_version") != 1:
        raise SidecarError(f"{path} is not a dataset sidecar (kind={data.get('kind')!r}, "
                           f"schema_version={data.get('schema_version')!r})",
                           expected="kind: nla_dataset, schema_version: 1")
    ext = data.get("extraction")
    if not isinstance(ext, dict) or "d_model" not in ext or "layer_index" not in ext:
        raise SidecarError(f"{path} lacks extraction.d_model / extraction.layer_index",
                           fix="re-extract with `nla-audit extract`")
    return data


# ----------------------------------------------------------------------------------------------- models
@dataclass(frozen=True)
class TokenMeta:
    """Injection-site facts, re-checked against the live tokenizer at load (see ``injection.check_tokens``)."""

    injection_char: str
    injection_token_id: int
    injection_left_neighbor_id: int
    injection_right_neighbor_id: int
    critic_suffix_ids: tuple[int, ...] | None = None
    injection_char_source: str | None = None  # how it was chosen: "cjk-autopick" | "added-token-fallback" | "manual"

    @classmethod
    def from_dict(cls, d: dict, where: str) -> TokenMeta:
        try:
            suffix = d.get("critic_suffix_ids")
            return cls(
                injection_char=str(d["injection_char"]),
                injection_token_id=int(d["injection_token_id"]),
                injection_left_neighbor_id=int(d["injection_left_neighbor_id"]),
                injection_right_neighbor_id=int(d["injection_right_neighbor_id"]),
                critic_suffix_ids=tuple(int(x) for x in suffix) if suffix else None,
                injection_char_source=d.get("injection_char_source"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise SidecarError(f"{where}: tokens block is incomplete ({exc})",
                               expected="injection_char, injection_token_id, injection_left/right_neighbor_id") from None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["critic_suffix_ids"] = list(self.critic_suffix_ids) if self.critic_suffix_ids else None
        return {k: v for k, v in d.items() if v is not None}


@dataclass(frozen=True)
class ModelSidecar:
    """A model sidecar (schema v2), normalised to nla_audit's names (``av``/``ar``)."""

    role: str  # "av" | "ar"
    base_checkpoint: str
    d_model: int
    layer_index: int | None
    tokens: TokenMeta | None
    av_template: str | None
    ar_template: str | None
    injection_scale: float | None = None
    mse_scale: float | None = None
    stage: str = "sl"
    baseline_rawvar: float | None = None  # B_rv, the fve_nrm denominator (``metrics``)
    baseline_mean_direction: float | None = None
    mean_direction: tuple[float, ...] | None = None  # normalised mean vector; lets the mean baseline be scored
    adapter: dict | None = None  # nla_audit: weights stored as LoRA adapters over base_checkpoint
    trained_on: tuple[str, ...] = ()
    parent_checkpoints: tuple[str, ...] = ()
    training: dict = field(default_factory=dict)
    created_at: str | None = None
    created_by: str = "nla_audit"

    # ---- reading
    @classmethod
    def from_dict(cls, d: dict, where: str = "sidecar") -> ModelSidecar:
        if d.get("kind") not in (None, "nla_model"):
            raise SidecarError(f"{where}: kind is {d.get('kind')!r}", expected="kind: nla_model")
        if d.get("schema_version") not in (2, None):
            raise SidecarError(f"{where}: schema_version {d.get('schema_version')!r} is not supported", expected="2")
        role = {"actor": "av", "av": "av", "critic": "ar", "ar": "ar"}.get(str(d.get("role")))
        if role is None:
            raise SidecarError(f"{where}: role is {d.get('role')!r}", expected="av/actor or ar/critic")
        templates = d.get("prompt_templates") or {}
        ext = d.get("extraction") or {}
        try:
            d_model = int(d["d_model"])
        except (KeyError, TypeError, ValueError):
            raise SidecarError(f"{where}: d_model missing or not an integer", fix="restore the sidecar") from None
        tokens = TokenMeta.from_dict(d["tokens"], where) if d.get("tokens") else None
        return cls(
            role=role,
            base_checkpoint=str(d.get("base_checkpoint", "")),
            d_model=d_model,
            layer_index=_layer_from(d),
            tokens=tokens,
            av_template=templates.get("av", templates.get("actor")),
            ar_template=templates.get("ar", templates.get("critic")),
            injection_scale=_scale(ext.get("injection_scale"), d_model, where, "injection_scale"),
            mse_scale=_scale(ext.get("mse_scale", "sqrt_d_model" if role == "ar" else None), d_model, where, "mse_scale"),
            stage=str(d.get("stage", "sl")),
            baseline_rawvar=_opt_float(ext.get("baseline_rawvar")),
            baseline_mean_direction=_opt_float(ext.get("baseline_mean_direction")),
            mean_direction=tuple(ext["mean_direction"]) if ext.get("mean_direction") else None,
            adapter=d.get("adapter"),
            trained_on=tuple(d.get("trained_on") or ()),
            parent_checkpoints=tuple(d.get("parent_checkpoints") or ()),
            training=dict(d.get("training") or {}),
            created_at=d.get("created_at"),
            created_by=str(d.get("created_by", "")),
        )

    # ---- writing
    def to_dict(self) -> dict:
        ext: dict[str, Any] = {"injection_scale": self.injection_scale, "mse_scale": self.mse_scale}
        for key in ("baseline_rawvar", "baseline_mean_direction"):
            if getattr(self, key) is not None:
                ext[key] = getattr(self, key)
        if self.mean_direction is not None:
            ext["mean_direction"] = [round(float(x), 6) for x in self.mean_direction]
        d: dict[str, Any] = {
            "kind": "nla_model", "schema_version": 2, "role": self.role, "stage": self.stage,
            "base_checkpoint": self.base_checkpoint, "d_model": self.d_model, "extraction": ext,
            "tokens": self.tokens.to_dict() if self.tokens else None,
            "prompt_templates": {k: v for k, v in (("av", self.av_template), ("ar", self.ar_template)) if v},
            "trained_on": list(self.trained_on), "parent_checkpoints": list(self.parent_checkpoints),
            "created_at": self.created_at or now_iso(), "created_by": self.created_by,
            "training": self.training or None, "adapter": self.adapter,
        }
        if self.layer_index is not None:
            if self.role == "ar":
                d["critic"] = {"extraction_layer_index": self.layer_index}
            d["extraction_layer_index"] = self.layer_index
        return d

    def save(self, checkpoint_dir: str | Path) -> Path:
        path = Path(checkpoint_dir) / SIDECAR_NAME
        atomic_write_text(path, _dump(self.to_dict()))
        return path

    @property
    def base_model(self) -> str:
        """The target model this checkpoint reads: the adapter's base, else the base checkpoint."""
        return (self.adapter or {}).get("base") or self.base_checkpoint

    def with_(self, **changes: Any) -> ModelSidecar:
        return replace(self, **changes)

    def fve_baseline(self) -> float | None:
        if self.baseline_rawvar is not None:
            return self.baseline_rawvar
        return KNOWN_BASELINES.get((self.base_checkpoint, self.layer_index)) if self.layer_index is not None else None

    # ---- facts a use requires: one clear line when the sidecar lacks them (not a TypeError on None later)
    def require_tokens(self) -> TokenMeta:
        return _required(self.tokens, "tokens (the injection token and its ids)", self.role)

    def require_injection_scale(self) -> float:
        return float(_required(self.injection_scale, "injection_scale", self.role))

    def require_mse_scale(self) -> float:
        return float(_required(self.mse_scale, "mse_scale", self.role))

    def require_layer(self) -> int:
        return int(_required(self.layer_index, "extraction layer index", self.role))


def _required(value: Any, name: str, role: str) -> Any:
    if value is None:
        raise SidecarError(f"the {role.upper()} sidecar has no {name}", fix="restore the checkpoint's nla_meta.yaml")
    return value


def _layer_from(d: dict) -> int | None:
    """K from ``critic.extraction_layer_index``, ``critic.num_hidden_layers`` (schema v1), the top-level
    ``extraction_layer_index`` (release), or ``ar.num_hidden_layers`` (docs/inference.md), first found wins."""
    critic = d.get("critic") or {}
    ar_block = d.get("ar")
    ar: dict = ar_block if isinstance(ar_block, dict) else {}
    for value in (critic.get("extraction_layer_index"), critic.get("num_hidden_layers"),
                  d.get("extraction_layer_index"), ar.get("num_hidden_layers")):
        if value is not None:
            return int(value)
    return None


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _scale(v: Any, d_model: int, where: str, name: str) -> float | None:
    if v is None or v == "raw":
        return None
    if v == "sqrt_d_model":
        return math.sqrt(d_model)
    try:
        out = float(v)
    except (TypeError, ValueError):
        raise SidecarError(f"{where}: extraction.{name} is {v!r}", expected="a number, 'sqrt_d_model' or null") from None
    if not math.isfinite(out) or out <= 0:
        raise SidecarError(f"{where}: extraction.{name} is {v!r}", expected="a positive finite number")
    return out


def read_model_sidecar(checkpoint_dir: str | Path, role: str | None = None) -> ModelSidecar:
    path = Path(checkpoint_dir) / SIDECAR_NAME
    meta = ModelSidecar.from_dict(_load_yaml(path), str(path))
    if role is not None and meta.role != role:
        raise SidecarError(f"{path} is an {meta.role.upper()} sidecar", expected=f"an {role.upper()} checkpoint",
                           fix=f"pass the {role.upper()} folder (--{role})")
    return meta

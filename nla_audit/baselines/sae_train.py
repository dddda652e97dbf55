"""Train an SAE with SAELens on an activation parquet's site, and measure it on held-out documents.

The SAE itself, its TopK/BatchTopK activation, the dead-latent auxiliary loss, the activation normalisation
(inputs scaled to mean norm √d while training, folded into the weights afterwards) and the BatchTopK →
JumpReLU conversion at save time are SAELens's (``SAETrainer`` and the ``*TrainingSAE`` classes), never
re-implemented here. This module only feeds it in-memory activations through SAELens's
public trainer seams (``step`` / ``maybe_reset_sparsity`` / ``set_final_sae_metadata``, the same ones its own
``MultiSAETrainer`` drives), so that a rich progress bar and the loss curve come for free.

Metrics (``metrics.json``) are those of the NLA (``nla_audit.metrics``), so the two compare directly:
``fve_nrm = 1 − mse_nrm / B_rv`` with ``mse_scale = √d`` and B_rv from the *training* vectors, plus the raw
reconstruction MSE, L0 (active latents per activation) and the fraction of latents never active on the
held-out set.
"""

from __future__ import annotations

import contextlib
import io
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nla_audit.baselines.sae import (
    METRICS_NAME,
    SAELENS_FILES,
    check_vectors,
    import_sae_lens,
    write_sae_meta,
)
from nla_audit.errors import ConfigError, InputError
from nla_audit.site import Site

ARCHS = ("topk", "batchtopk")
DTYPES = ("float32", "bfloat16")


@dataclass(frozen=True)
class SAETrainConfig:
    """What ``nla-audit sae train`` does; saved into ``sae_meta.yaml``."""

    data: tuple[str, ...]
    out: str
    held_out: str | None = None
    arch: str = "topk"  # "topk": exactly k latents per activation; "batchtopk": k on average (saved as JumpReLU)
    expansion: int = 4  # d_sae = expansion · d_model
    k: int = 32
    steps: int = 1000
    batch_size: int = 512
    lr: float = 2e-3  # constant, then linear decay to 0 over the last 20% of steps
    seed: int = 0
    dead_window: int = 250  # steps without firing after which a latent is "dead" (drives the TopK aux loss)
    normalize: bool = True  # SAELens expected_average_only_in: scale inputs to mean norm √d, folded after training
    init_b_dec_mean: bool = True  # decoder bias starts at the data mean (residual streams have a large mean)
    dtype: str = "float32"  # weights on disk; bfloat16 halves the folder (evaluation is always float32)
    model: str | None = None  # expected base model; data from another model is refused
    layer: int | None = None  # expected layer K; data from another layer is refused
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not self.data:
            raise InputError("no training data given", expected="at least one --data PARQUET")
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown SAE architecture {self.arch!r}", expected=" or ".join(ARCHS))
        if self.dtype not in DTYPES:
            raise ConfigError(f"unknown weight dtype {self.dtype!r}", expected=" or ".join(DTYPES))
        for name in ("expansion", "k", "steps", "batch_size", "dead_window"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} is {getattr(self, name)}", expected="an integer >= 1")
        if not self.lr > 0:
            raise ConfigError(f"learning rate is {self.lr}", expected="> 0")


# ----------------------------------------------------------------------------------------------- data
@dataclass
class SiteVectors:
    """Activations of one site read from one or more parquets, with what identifies them."""

    vectors: torch.Tensor
    site: Site
    dataset_ids: list[str]
    doc_ids: set[str]
    texts: list[str] = field(default_factory=list)  # detokenized_text_truncated, when asked for


def load_site_vectors(paths: list[str] | tuple[str, ...], expect: Site | None = None,
                      with_texts: bool = False) -> SiteVectors:
    """Concatenate parquets of one site; refuse a file from another site than ``expect`` or the first file."""
    from nla_audit.sidecar import read_dataset_sidecar
    from nla_audit.vectors import read_vectors

    chunks, ids, docs, texts, site = [], [], set(), [], expect
    for path in paths:
        meta = read_dataset_sidecar(path)
        here = Site.from_dataset_meta(meta)
        if site is not None and not here.same_as(site):
            raise InputError(f"{path} holds activations of {here}, but {site} is needed here",
                             expected="every file from the same base model and layer K",
                             fix="extract all files with the same --model/--layer (nla-audit extract)")
        vecs, cols = read_vectors(path, ["doc_id", "detokenized_text_truncated"] if with_texts else ["doc_id"])
        if len(vecs) == 0:
            raise InputError(f"{path} holds no activations", expected="at least one row")
        chunks.append(check_vectors(torch.from_numpy(vecs.copy()), here.width, f"vectors in {path}"))
        ids.append(str(meta.get("dataset_id", Path(path).name)))
        docs.update(cols["doc_id"])
        texts.extend(cols.get("detokenized_text_truncated", []))
        site = here if site is None or site.d_model is None else site
    if site is None:
        raise InputError("no activation files were given", expected="one or more activation parquets")
    return SiteVectors(torch.cat(chunks), site, ids, docs, texts)


def check_requested(site: Site, model: str | None, layer: int | None) -> None:
    """The data must come from the --model/--layer the user asked for, when they asked."""
    if model is not None and not site.same_as(Site(model, site.layer)):
        raise InputError(f"the data holds activations of {site}, not of {model}",
                         fix="pass data extracted from that model (nla-audit extract --model ...), or drop --model")
    if layer is not None and layer != site.layer:
        raise InputError(f"the data holds activations of {site}, not of layer {layer}",
                         fix=f"extract at layer {layer} (nla-audit extract --layer {layer}), or drop --layer")


def shuffled_batches(vectors: torch.Tensor, batch_size: int, seed: int) -> Iterator[torch.Tensor]:
    """Endless mini-batches, a fresh seeded permutation per epoch (the SAELens ``DataProvider`` protocol)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(vectors), generator=gen)
        for i in range(0, max(len(perm) - batch_size + 1, 1), batch_size):
            yield vectors[perm[i:i + batch_size]]


# ----------------------------------------------------------------------------------------------- metrics
@torch.no_grad()
def evaluate_sae(sae: Any, vectors: torch.Tensor, baseline_rawvar: float, batch: int = 2048) -> dict:
    """Reconstruction metrics of ``sae`` on raw ``vectors`` (see the module docstring)."""
    from nla_audit.metrics import cosine, default_mse_scale, mse_nrm

    scale = default_mse_scale(vectors.shape[1])
    mse, nrm, cos, l0, err2 = [], [], [], [], 0.0
    fired = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    for i in range(0, len(vectors), batch):
        x = vectors[i:i + batch].to(sae.device, sae.dtype)
        acts = sae.encode(x)
        recon = sae.decode(acts).float().cpu()
        x = x.float().cpu()
        mse.append((recon - x).pow(2).mean(-1))
        nrm.append(mse_nrm(recon, x, scale))
        cos.append(cosine(recon, x))
        active = (acts > 0).cpu()
        l0.append(active.sum(-1).float())
        fired |= active.any(0)
        err2 += (recon - x).pow(2).sum().item()
    nrm_all = torch.cat(nrm)
    total_var = (vectors.float() - vectors.float().mean(0)).pow(2).sum().item()
    return {"n": len(vectors), "mse": torch.cat(mse).mean().item(), "mse_nrm": nrm_all.mean().item(),
            "fve_nrm": 1.0 - nrm_all.mean().item() / baseline_rawvar,
            "fve_nrm_median": (1.0 - nrm_all / baseline_rawvar).median().item(),
            "fve_raw": 1.0 - err2 / max(total_var, 1e-12), "cos": torch.cat(cos).mean().item(),
            "l0": torch.cat(l0).mean().item(), "dead_frac": 1.0 - fired.float().mean().item()}


# ----------------------------------------------------------------------------------------------- training
def _build(cfg: SAETrainConfig, site: Site) -> tuple[Any, Any]:
    """(SAELens training SAE, SAETrainer) for ``cfg``, on ``site``."""
    sae_lens = import_sae_lens()
    from sae_lens.config import SAETrainerConfig

    arch_cfg = {"topk": sae_lens.TopKTrainingSAEConfig, "batchtopk": sae_lens.BatchTopKTrainingSAEConfig}[cfg.arch]
    sae_cfg = arch_cfg(d_in=site.width, d_sae=cfg.expansion * site.width, k=cfg.k, device=cfg.device,
                       normalize_activations="expected_average_only_in" if cfg.normalize else "none")
    sae_cfg.metadata.model_name = site.base_model
    sae_cfg.metadata.hook_name = site.hook_name
    sae = (sae_lens.TopKTrainingSAE if cfg.arch == "topk" else sae_lens.BatchTopKTrainingSAE)(sae_cfg)
    trainer_cfg = SAETrainerConfig(total_training_samples=cfg.steps * cfg.batch_size,
                                   train_batch_size_samples=cfg.batch_size, lr=cfg.lr, lr_end=cfg.lr,
                                   lr_decay_steps=cfg.steps // 5, dead_feature_window=cfg.dead_window,
                                   feature_sampling_window=max(cfg.steps, 1), device=cfg.device)
    return sae, sae_lens.SAETrainer(trainer_cfg, sae, data_provider=iter(()))


def _fit(trainer: Any, batches: Iterator[torch.Tensor], cfg: SAETrainConfig, progress: bool) -> list[float]:
    """The SAETrainer loop on our batches; returns the reconstruction (MSE) loss per step, without the
    dead-latent auxiliary term, which switches on only after ``dead_window`` steps."""
    from nla_audit.progress import RateProgress

    sae = trainer.sae
    if cfg.normalize:
        with contextlib.redirect_stderr(io.StringIO()):  # SAELens's own tqdm bar; ours follows
            trainer.activation_scaler.estimate_scaling_factor(sae.cfg.d_in, batches, min(cfg.steps, 20))
    if cfg.init_b_dec_mean:  # start the decoder bias at the data mean (in the scaled space the SAE trains in)
        sample = torch.cat([next(batches) for _ in range(min(cfg.steps, 20))])
        with torch.no_grad():
            sae.b_dec.copy_(trainer.activation_scaler(sample.to(sae.device)).mean(0))
    losses = []
    with RateProgress("sae train", total=cfg.steps, enabled=progress, unit="steps") as bar:
        for _ in range(cfg.steps):
            trainer.maybe_reset_sparsity()
            out = trainer.step(next(batches))
            trainer.n_training_steps += 1
            losses.append(float(out.losses.get("mse_loss", out.loss).detach()))
            bar.advance(1, cfg.batch_size, loss=losses[-1], l0=out.feature_acts.bool().sum(-1).float().mean().item())
    if trainer.activation_scaler.scaling_factor is not None:  # as SAETrainer.fit: fold the scale into the weights
        sae.fold_activation_norm_scaling_factor(trainer.activation_scaler.scaling_factor)
        trainer.activation_scaler.scaling_factor = None
    trainer.set_final_sae_metadata()
    return losses


def _check_out(out: Path) -> None:
    """Refuse to replace a non-empty folder that is not an SAE (``atomic_dir`` swaps the whole folder)."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / SAELENS_FILES[0]).exists())):
        raise InputError(f"output {out} exists and is not an SAE folder", expected="a new or an SAE folder",
                         fix="choose another --out")


def train_sae(cfg: SAETrainConfig, progress: bool = True) -> dict:
    """Train, save (SAELens format + sidecars) and evaluate an SAE; returns the metrics dict."""
    from nla_audit.atomic import atomic_dir
    from nla_audit.metrics import baselines, default_mse_scale

    out = Path(cfg.out)
    _check_out(out)
    train = load_site_vectors(cfg.data)
    check_requested(train.site, cfg.model, cfg.layer)
    held = _held_out(cfg.held_out, train)
    b_rv = baselines(train.vectors, default_mse_scale(train.site.width))["baseline_rawvar"]
    torch.manual_seed(cfg.seed)
    sae, trainer = _build(cfg, train.site)
    start = time.perf_counter()
    losses = _fit(trainer, shuffled_batches(train.vectors, cfg.batch_size, cfg.seed), cfg, progress)
    seconds = time.perf_counter() - start
    with atomic_dir(out) as tmp:
        sae.to(dtype=getattr(torch, cfg.dtype)).save_inference_model(tmp)
        saved = import_sae_lens().SAE.load_from_disk(str(tmp), dtype="float32").eval()  # evaluate what is on disk
        eval_set = held.vectors if held else train.vectors
        metrics = {"site": str(train.site), "arch": cfg.arch, "d_sae": sae.cfg.d_sae, "k": cfg.k,
                   "baseline_rawvar": b_rv, "eval_on": "held_out" if held else "train (no --held-out given)",
                   "eval": evaluate_sae(saved, eval_set, b_rv),
                   "train_subset": evaluate_sae(saved, train.vectors[:len(eval_set)], b_rv),
                   "training": {"steps": cfg.steps, "samples": cfg.steps * cfg.batch_size, "rows": len(train.vectors),
                                "epochs": cfg.steps * cfg.batch_size / len(train.vectors), "seconds": seconds,
                                "loss_first": losses[0], "loss_last": losses[-1],
                                "loss_curve": losses[:: max(1, len(losses) // 100)]},
                   "held_out_datasets": held.dataset_ids if held else []}
        (tmp / METRICS_NAME).write_text(json.dumps(metrics, indent=2), encoding="utf-8")
        write_sae_meta(tmp, train.site, sae.cfg.d_sae, train.dataset_ids, _config_record(cfg))
        for f in (tmp, *tmp.iterdir()):  # mkdtemp / safetensors create owner-only files; outputs are shared
            f.chmod(0o755 if f.is_dir() else 0o644)
    return metrics


def _held_out(path: str | None, train: SiteVectors) -> SiteVectors | None:
    """Held-out activations of the training site, from documents the training data never saw."""
    if path is None:
        return None
    held = load_site_vectors([path], train.site)
    shared = held.doc_ids & train.doc_ids
    if shared:
        raise InputError(f"held-out file {path} shares {len(shared)} documents with the training data "
                         f"(e.g. {sorted(shared)[0]!r})", expected="a document-level split",
                         fix="split with `nla-audit split` and hold out its test file")
    return held


def _config_record(cfg: SAETrainConfig) -> dict:
    rec = asdict(cfg)
    rec["data"] = list(cfg.data)
    del rec["out"]  # the folder itself; an absolute path would leak into shipped copies
    return {k: v for k, v in rec.items() if v is not None}


def format_metrics(m: dict) -> str:
    """A few human-readable lines for the CLI and the benchmark."""
    e, t = m["eval"], m["training"]
    return "\n".join([
        f"SAE {m['arch']} d_sae={m['d_sae']} k={m['k']} on {m['site']}",
        f"eval on {m['eval_on']} (n={e['n']}): mse {e['mse']:.4g}  mse_nrm {e['mse_nrm']:.4f}  "
        f"fve_nrm {e['fve_nrm']:.4f} (median {e['fve_nrm_median']:.4f})  fve_raw {e['fve_raw']:.4f}  "
        f"cos {e['cos']:.4f}  L0 {e['l0']:.1f}  dead latents {100 * e['dead_frac']:.1f}%",
        f"training: {t['steps']} steps, {t['samples']:,} samples ({t['epochs']:.1f} epochs of {t['rows']:,} rows), "
        f"{t['seconds']:.0f} s; loss {t['loss_first']:.4g} -> {t['loss_last']:.4g}",
        f"(fve_nrm denominator B_rv = {m['baseline_rawvar']:.4f}, from the training vectors)",
    ])

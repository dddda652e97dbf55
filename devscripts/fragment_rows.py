"""Chat NLA phase 9: AV-SFT rows at byte-fragment tokens, the positions the chat AV had barely seen.

Why: phase 7's AV loops on digits without closing its tag on 4 of 12 cot_hints items; the explained token there
is the last byte of the multi-byte marker "■", a token that decodes alone to "\ufffd". Only 8 of the ~9,000 rows
of the mix's SFT splits sit at such a token (the fortunes are ASCII; ShareGPT's are in CJK turns). This script
draws byte-fragment positions from the *training* conversations and documents (av_sft and ar_sft splits; the rl
and test splits stay for choosing and scoring), and ``merge`` adds the AV's AR-selected best-of-k samples there
(``nla-audit train av-texts --set stage=av_sft best_of=4``: one round of expert iteration, as phase 3 did on text)
to phase 5's AV-SFT rows. docs/results/chat-nla.md, phase 9.

    python devscripts/fragment_rows.py rows --out runs/chat/mix9/fragment_rows.parquet
    nla-audit train av-texts --av runs/chat/av_sft6/av --data runs/chat/mix9/fragment_rows.parquet \
        --out runs/chat/mix9/fragment_bo4.parquet --set stage=av_sft best_of=4 ar=runs/chat/ar_wise/a0.5
    python devscripts/fragment_rows.py merge --mix runs/chat/mix9 --base runs/chat/mix5/av_sft.parquet
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
TRAIN_SPLITS = ("av_sft", "ar_sft")
BASE = Path("runs/chat/data/base.av_sft.parquet")  # the mix extraction whose settings the rows share


def fragment_positions(ids: list[int], tok, control: list[bool] | None) -> list[int]:
    """Content positions (>= 1, not a template token) whose token decodes alone to an incomplete UTF-8 sequence."""
    specials = set(tok.all_special_ids or [])
    return [p for p in range(1, len(ids)) if ids[p] not in specials and not (control and control[p])
            and "\ufffd" in tok.decode([ids[p]])]


def rows(out: Path, max_rows: int, per_doc: int, max_length: int) -> None:
    """Byte-fragment positions of training documents (ShareGPT first, then fortunes), extracted at the mix's layer."""
    from nla_audit.corpus import iter_documents
    from nla_audit.extract import block_outputs, doc_rng, prepare_document
    from nla_audit.models import load_target
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from nla_audit.split import DEFAULT_FRACTIONS, assign_split
    from nla_audit.training.datagen import _write

    meta = read_dataset_sidecar(BASE)
    layer = int(meta["extraction"]["layer_index"])
    target = load_target(meta["extraction"]["base_model"], dtype="float32")
    tok = target.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    vecs, cols = [], {k: [] for k in ("doc_id", "n_raw_tokens", "detokenized_text_truncated", "activation_layer")}
    for corpus in ("sharegpt", "default"):
        for doc in iter_documents(corpus):
            if len(vecs) >= max_rows:
                break
            if assign_split(doc.id, dict(DEFAULT_FRACTIONS), 42) not in TRAIN_SPLITS:
                continue
            ids, layout = prepare_document(doc, tok, max_length)
            pool = fragment_positions(ids, tok, None if layout is None else list(layout.control))
            if not pool:
                continue
            rng = doc_rng(7, doc.id)
            picks = sorted(rng.choice(pool, size=min(per_doc, len(pool), max_rows - len(vecs)), replace=False))
            hidden = block_outputs(target.model, layer, [ids[: picks[-1] + 1]], pad)[0]
            for p in picks:
                vecs.append(hidden[p].numpy())
                cols["doc_id"].append(doc.id)
                cols["n_raw_tokens"].append(int(p) + 1)
                cols["detokenized_text_truncated"].append(tok.decode(ids[: p + 1], skip_special_tokens=True))
                cols["activation_layer"].append(layer)
    if not vecs:
        raise SystemExit("fragment_rows: no byte-fragment positions in the training splits")
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, np.stack(vecs).astype(np.float32), cols, {})
    meta.update(dataset_id="byte_fragment_rows_of_the_sft_splits", row_count=len(vecs), parent_datasets=[str(BASE)],
                split={**meta.get("split", {}), "name": "av_sft+ar_sft (byte-fragment tokens)"},
                created_by="devscripts/fragment_rows.py")
    meta["extraction"].update(position_rule={"fragment": f"up to {per_doc} content positions a document whose token "
                                             "decodes alone to an incomplete UTF-8 sequence (seeded choice)"},
                              corpus="sharegpt+default (training splits)", documents_used=len(set(cols["doc_id"])))
    for k in ("kind", "schema_version", "created_at"):
        meta.pop(k, None)
    write_dataset_sidecar(out, meta)
    n_docs = len(set(cols["doc_id"]))
    print(f"{len(vecs)} byte-fragment rows from {n_docs} training documents → {out}")


def merge(mix: Path, base: Path, samples: str, repeat: int) -> None:
    """``base``'s AV-SFT rows + the best-of-k samples at byte-fragment tokens (``repeat`` times), interleaved."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.atomic import atomic_path
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar

    old = pq.read_table(base)
    new = pq.read_table(mix / samples)
    new = new.select([c for c in old.column_names]).cast(old.schema)
    both = pa.concat_tables([old] + [new] * repeat)
    both = both.take(np.random.default_rng(0).permutation(len(both)))
    out = mix / "av_sft.parquet"
    with atomic_path(out, ".parquet") as tmp:
        pq.write_table(both, tmp, compression="zstd")
    meta = read_dataset_sidecar(base)
    meta.update(row_count=len(both), dataset_id="av_sft_phase5_plus_byte_fragment_best_of_k",
                parent_datasets=[*meta.get("parent_datasets", []), str(base), str(mix / samples)],
                created_by="devscripts/fragment_rows.py")
    for k in ("kind", "schema_version", "created_at"):
        meta.pop(k, None)
    write_dataset_sidecar(out, meta)
    print(f"{len(old)} rows of {base} + {len(new)} byte-fragment rows × {repeat} → {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["rows", "merge"])
    ap.add_argument("--out", type=Path, default=Path("runs/chat/mix9/fragment_rows.parquet"))
    ap.add_argument("--max-rows", type=int, default=320)
    ap.add_argument("--per-doc", type=int, default=2)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--mix", type=Path, default=Path("runs/chat/mix9"))
    ap.add_argument("--base", type=Path, default=Path("runs/chat/mix5/av_sft.parquet"))
    ap.add_argument("--samples", default="fragment_bo4.parquet")
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    if args.step == "rows":
        rows(args.out, args.max_rows, args.per_doc, args.max_length)
    else:
        merge(args.mix, args.base, args.samples, args.repeat)


if __name__ == "__main__":
    sys.exit(main())

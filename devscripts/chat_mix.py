"""SFT data for continuing the shipped NLA on chats without undoing its GRPO on text (the chat NLA's recipe).

Why: continuing the shipped AV and AR by SFT on the chat + text mix with *teacher* text everywhere undid their
GRPO on text: after 200 AV steps the held-out text fve_nrm fell from 0.59 to 0.48 (shipped AR) and 0.39 (the
continued AR). The AV was pulled back to imitating the offline teacher (whose warm start scored 0.31), and the
AR away from the AV's post-GRPO style. So text rows get the **shipped AV's own samples** as targets
(self-distillation: the AV's text policy is kept, and the AR keeps reading it), and chat rows keep the chat
teacher's text (what the AV must learn).

    python devscripts/chat_mix.py text-rows   # text rows of the pooled SFT splits → runs/chat/mix/text_rows.parquet
    nla-audit train av-texts --av <shipped AV> --data runs/chat/mix/text_rows.parquet \
        --out runs/chat/mix/text_ar.parquet --set max_rows=N      # the shipped AV's samples (resumable)
    python devscripts/chat_mix.py merge       # → runs/chat/mix/{av_sft,ar_sft}.parquet (+ sidecars)

Phase 3 swaps the text rows' single samples for **AR-selected best-of-k** ones (one round of expert iteration on
text, ``av-texts --set stage=av_sft best_of=4 ar=<shipped AR>``): phase 2's text fell 0.089 with the shipped
AV's average sample as target, and the closest of 4 scores above that average, so its targets pull text up
rather than toward the mean. ``--mix DIR --own FILE`` point the steps at that run's files:

    python devscripts/chat_mix.py text-rows --mix runs/chat/mix3
    nla-audit train av-texts --av <shipped AV> --data runs/chat/mix3/text_rows.parquet \
        --out runs/chat/mix3/text_bo4.parquet --set stage=av_sft best_of=4 ar=<shipped AR> max_rows=900 chunk_rows=64
    python devscripts/chat_mix.py merge --mix runs/chat/mix3 --own text_bo4.parquet
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

RUN = Path("runs/chat")
TEXT_REPEAT = 2  # each self-distilled text row twice: sampling is the slow part, and text must hold its share
MIX = RUN / "mix"  # phase 2's; --mix points the steps elsewhere
OWN = "text_ar.parquet"  # the av-texts output inside MIX; --own names another


def text_rows() -> None:
    """The fortunes rows of both SFT splits of the mix extraction, as an activation parquet av-texts can read."""
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from nla_audit.training.datagen import PROVENANCE, _write
    from nla_audit.vectors import read_vectors

    vecs, cols = [], {k: [] for k in PROVENANCE}
    for split in ("av_sft", "ar_sft"):
        v, c = read_vectors(RUN / "data" / f"base.{split}.parquet", PROVENANCE)
        keep = np.array([not d.startswith("sharegpt:") for d in c["doc_id"]])
        vecs.append(v[keep])
        for k in PROVENANCE:
            cols[k] += [x for x, m in zip(c[k], keep) if m]
    out = MIX / "text_rows.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, np.concatenate(vecs), cols, {})
    meta = read_dataset_sidecar(RUN / "data" / "base.av_sft.parquet")
    meta.update(dataset_id="text_rows_of_the_sft_splits", row_count=len(cols["doc_id"]),
                parent_datasets=[str(RUN / "data" / f"base.{s}.parquet") for s in ("av_sft", "ar_sft")],
                split={**meta.get("split", {}), "name": "av_sft+ar_sft (text rows)"}, created_by="devscripts/chat_mix.py")
    for k in ("kind", "schema_version", "created_at"):
        meta.pop(k, None)
    write_dataset_sidecar(out, meta)
    print(f"{len(cols['doc_id'])} text rows → {out}")


def own_text_rows():
    """The shipped AV's samples on text rows in AR-SFT form: ``text_ar.parquet`` when av-texts finished, else the
    chunks it has written so far (so a CPU session can stop sampling when it must start training)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.sidecar import AR_TEMPLATE
    from nla_audit.training.datagen import PROVENANCE
    from nla_audit.vectors import read_vectors

    done = MIX / OWN
    if done.exists():
        table = pq.read_table(done)
        if "explanation" in table.column_names:  # ar_sft form
            return table
        texts = [untag(r) for r in table.column("response").to_pylist()]  # av_sft form (best-of-k)
        return table.drop(["prompt", "response"]).append_column("prompt", pa.array(
            [AR_TEMPLATE.replace("{explanation}", t) for t in texts])).append_column("explanation", pa.array(texts))
    parts = sorted((MIX / f"{OWN}.parts").glob("[0-9]*.parquet"))
    if not parts:
        sys.exit("no samples yet: run nla-audit train av-texts first (see the module docstring)")
    got = pa.concat_tables([pq.read_table(p) for p in parts]).filter(pa.compute.field("ok"))
    rows, texts = got.column("row").to_numpy(), got.column("text").to_pylist()
    vecs, cols = read_vectors(MIX / "text_rows.parquet", PROVENANCE)
    arrays = {"activation_vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs[rows].reshape(-1)), vecs.shape[1])}
    arrays.update({k: pa.array([cols[k][i] for i in rows]) for k in PROVENANCE})
    arrays["prompt"] = pa.array([AR_TEMPLATE.replace("{explanation}", t) for t in texts])
    arrays["explanation"] = pa.array(texts)
    print(f"{len(parts)} chunk(s) of av-texts samples: {len(texts)} text rows", file=sys.stderr)
    return pa.table(arrays)


def untag(response: str) -> str:
    """An AV-SFT response's explanation without its <explanation> tags (av_sft_columns' form)."""
    return response.strip().removeprefix("<explanation>").removesuffix("</explanation>").strip()


def merge() -> None:
    """Chat rows of the teacher's SFT parquets + the shipped AV's samples on text rows, for both SFT stages."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.atomic import atomic_path
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar

    own = own_text_rows()  # ar_sft form: prompt (AR template) + explanation
    for stage in ("av_sft", "ar_sft"):
        teacher = pq.read_table(RUN / "data2" / f"{stage}.parquet")
        chat = teacher.filter(pa.compute.starts_with(teacher.column("doc_id"), "sharegpt:"))
        text = own.select([c for c in own.column_names if c in chat.column_names or c == "explanation"])
        if stage == "av_sft":
            responses = [f"<explanation>\n{t}\n</explanation>" for t in text.column("explanation").to_pylist()]
            prompt = chat.column("prompt").slice(0, 1).to_pylist()[0]
            text = text.drop(["explanation", "prompt"]).append_column("prompt", pa.array([prompt] * len(text), chat.schema.field("prompt").type)) \
                .append_column("response", pa.array(responses))
        text = text.select(chat.column_names).cast(chat.schema)
        both = pa.concat_tables([chat] + [text] * TEXT_REPEAT)
        order = np.random.default_rng(0).permutation(len(both))  # interleaved, so any prefix is mixed
        out = MIX / f"{stage}.parquet"
        with atomic_path(out, ".parquet") as tmp:
            pq.write_table(both.take(order), tmp, compression="zstd")
        meta = read_dataset_sidecar(RUN / "data2" / f"{stage}.parquet")
        meta.update(row_count=len(both), dataset_id=f"{stage}_chat_teacher_plus_shipped_av_text",
                    parent_datasets=[*meta.get("parent_datasets", []), str(MIX / OWN)],
                    created_by="devscripts/chat_mix.py",
                    api_summaries={"teacher": "offline (chat rows); the shipped AV's own samples (text rows)"})
        for k in ("kind", "schema_version", "created_at"):
            meta.pop(k, None)
        write_dataset_sidecar(out, meta)
        print(f"{stage}: {len(chat)} chat rows (teacher) + {len(text)} text rows (shipped AV) × {TEXT_REPEAT} → {out}")


def main() -> None:
    global MIX, OWN
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["text-rows", "merge"])
    ap.add_argument("--mix", type=Path, default=MIX, help="the run's folder of mixed SFT data (default %(default)s)")
    ap.add_argument("--own", default=OWN, help="the av-texts output in it: ar_sft or best-of av_sft form")
    args = ap.parse_args()
    MIX, OWN = args.mix, args.own
    {"text-rows": text_rows, "merge": merge}[args.step]()


if __name__ == "__main__":
    sys.exit(main())

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

Phase 5 keeps the chat teacher only at template (control) tokens. Phase 3's AV wrote the chat teacher's form on
59% of held-out *text* positions (fve_nrm 0.22 there against 0.53 for the shipped AV on the same rows), and the
chat form read worse than the shipped AV's local-context form at chat content positions too (0.25 vs 0.35): the
teacher's form is an SFT imitation, the shipped AV's a GRPO policy. So a content row's target becomes the
teacher's first line (whose turn and where, which system prompt) followed by the shipped AV's own sample at that
position; control rows keep the whole teacher text, text rows the shipped AV's samples:

    python devscripts/chat_mix.py content-rows --mix runs/chat/mix5
    nla-audit train av-texts --av <shipped AV> --data runs/chat/mix5/content_rows.parquet \
        --out runs/chat/mix5/content_ar.parquet --set max_rows=900 chunk_rows=64
    python devscripts/chat_mix.py merge --mix runs/chat/mix5 --own ../mix3/text_bo4.parquet --content content_ar.parquet
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
CONTENT = ""  # phase 5: the av-texts output on chat content rows inside MIX ("" = content rows keep the teacher)


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


def first_line(explanation: str) -> str:
    """The chat teacher's first line: where in the conversation the token is, whose turn, which system prompt."""
    return untag(explanation).split("\n", 1)[0].strip()


def is_content(explanation: str) -> bool:
    """A chat teacher row at a content token ("Chat, inside …"), not at a template token ("Chat template …")."""
    return first_line(explanation).startswith("Chat,")


def _row_key(doc_id: str, n_raw_tokens: int, text: str) -> str:
    return f"{doc_id}\x00{n_raw_tokens}\x00{text}"


def content_rows() -> None:
    """The chat teacher's content rows (AV-SFT split of data2), shuffled, as an activation parquet av-texts can
    read, and their first lines (``content_rows.headers.json``, keyed by row) for the merge."""
    import json

    import pyarrow.parquet as pq

    from nla_audit.atomic import atomic_path
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar
    from nla_audit.training.datagen import PROVENANCE, _write

    t = pq.read_table(RUN / "data2" / "av_sft.parquet").to_pydict()
    keep = [i for i, (d, r) in enumerate(zip(t["doc_id"], t["response"])) if d.startswith("sharegpt:") and is_content(r)]
    keep = [keep[i] for i in np.random.default_rng(0).permutation(len(keep))]
    vecs = np.stack([np.asarray(t["activation_vector"][i], dtype=np.float32) for i in keep])
    out = MIX / "content_rows.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(out, vecs, {k: [t[k][i] for i in keep] for k in PROVENANCE}, {})
    headers = {_row_key(t["doc_id"][i], t["n_raw_tokens"][i], t["detokenized_text_truncated"][i]):
               first_line(t["response"][i]) for i in keep}
    with atomic_path(MIX / "content_rows.headers.json", ".json") as tmp:
        Path(tmp).write_text(json.dumps(headers))
    meta = read_dataset_sidecar(RUN / "data2" / "av_sft.parquet")
    meta.update(dataset_id="chat_content_rows_of_the_av_sft_split", row_count=len(keep),
                parent_datasets=[str(RUN / "data2" / "av_sft.parquet")],
                split={**meta.get("split", {}), "name": "av_sft (chat content rows)"}, created_by="devscripts/chat_mix.py")
    for k in ("kind", "schema_version", "created_at"):
        meta.pop(k, None)
    write_dataset_sidecar(out, meta)
    print(f"{len(keep)} chat content rows → {out}")


def content_hybrid_rows():
    """Phase 5's content rows in AR-SFT form: the teacher's first line, a blank line, the shipped AV's sample."""
    import json

    import pyarrow as pa

    from nla_audit.sidecar import AR_TEMPLATE

    own = own_rows(CONTENT, "content_rows.parquet")
    headers = json.loads((MIX / "content_rows.headers.json").read_text())
    keys = [_row_key(d, n, t) for d, n, t in zip(own.column("doc_id").to_pylist(), own.column("n_raw_tokens").to_pylist(),
                                                  own.column("detokenized_text_truncated").to_pylist())]
    texts = [f"{headers[k]}\n\n{e}" for k, e in zip(keys, own.column("explanation").to_pylist())]
    own = own.drop(["prompt", "explanation"])
    return own.append_column("prompt", pa.array([AR_TEMPLATE.replace("{explanation}", t) for t in texts])) \
        .append_column("explanation", pa.array(texts))


def own_text_rows():
    """The shipped AV's samples on text rows (``--own``), in AR-SFT form."""
    return own_rows(OWN, "text_rows.parquet")


def own_rows(name: str, rows_file: str):
    """The shipped AV's samples on ``rows_file``'s rows in AR-SFT form: av-texts' output ``name`` when it finished,
    else the chunks it has written so far (so a CPU session can stop sampling when it must start training)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.sidecar import AR_TEMPLATE
    from nla_audit.training.datagen import PROVENANCE
    from nla_audit.vectors import read_vectors

    done = MIX / name
    if done.exists():
        table = pq.read_table(done)
        if "explanation" in table.column_names:  # ar_sft form
            return table
        texts = [untag(r) for r in table.column("response").to_pylist()]  # av_sft form (best-of-k)
        return table.drop(["prompt", "response"]).append_column("prompt", pa.array(
            [AR_TEMPLATE.replace("{explanation}", t) for t in texts])).append_column("explanation", pa.array(texts))
    parts = sorted((MIX / f"{name}.parts").glob("[0-9]*.parquet"))
    if not parts:
        sys.exit("no samples yet: run nla-audit train av-texts first (see the module docstring)")
    got = pa.concat_tables([pq.read_table(p) for p in parts]).filter(pa.compute.field("ok"))
    rows, texts = got.column("row").to_numpy(), got.column("text").to_pylist()
    vecs, cols = read_vectors(MIX / rows_file, PROVENANCE)
    arrays = {"activation_vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs[rows].reshape(-1)), vecs.shape[1])}
    arrays.update({k: pa.array([cols[k][i] for i in rows]) for k in PROVENANCE})
    arrays["prompt"] = pa.array([AR_TEMPLATE.replace("{explanation}", t) for t in texts])
    arrays["explanation"] = pa.array(texts)
    print(f"{len(parts)} chunk(s) of av-texts samples: {len(texts)} rows of {rows_file}", file=sys.stderr)
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
    content = content_hybrid_rows() if CONTENT else None
    for stage in ("av_sft", "ar_sft"):
        teacher = pq.read_table(RUN / "data2" / f"{stage}.parquet")
        chat = teacher.filter(pa.compute.starts_with(teacher.column("doc_id"), "sharegpt:"))
        if content is not None:  # phase 5: the teacher keeps only the template rows
            said = chat.column("response" if stage == "av_sft" else "explanation").to_pylist()
            chat = chat.filter(pa.array([not is_content(r) for r in said]))
        parts = [chat] + [_as_stage(own, chat, stage)] * TEXT_REPEAT
        if content is not None:
            parts.append(_as_stage(content, chat, stage))
        both = pa.concat_tables(parts)
        order = np.random.default_rng(0).permutation(len(both))  # interleaved, so any prefix is mixed
        out = MIX / f"{stage}.parquet"
        with atomic_path(out, ".parquet") as tmp:
            pq.write_table(both.take(order), tmp, compression="zstd")
        meta = read_dataset_sidecar(RUN / "data2" / f"{stage}.parquet")
        meta.update(row_count=len(both), dataset_id=f"{stage}_chat_teacher_plus_shipped_av_text",
                    parent_datasets=[*meta.get("parent_datasets", []), str(MIX / OWN)],
                    created_by="devscripts/chat_mix.py",
                    api_summaries={"teacher": "offline (chat rows); the shipped AV's own samples (text rows)" +
                                   ("; chat content rows: the teacher's first line + the shipped AV's sample" if CONTENT else "")})
        for k in ("kind", "schema_version", "created_at"):
            meta.pop(k, None)
        write_dataset_sidecar(out, meta)
        extra = f" + {len(content)} chat content rows (teacher's first line + shipped AV)" if content is not None else ""
        print(f"{stage}: {len(chat)} chat rows (teacher) + {len(own)} text rows (shipped AV) × {TEXT_REPEAT}{extra} → {out}")


def _as_stage(rows, like, stage: str):
    """AR-SFT-form rows (prompt + explanation) cast to ``like``'s schema: AV-SFT form (the AV prompt + a tagged
    response) for the av_sft stage."""
    import pyarrow as pa

    rows = rows.select([c for c in rows.column_names if c in like.column_names or c == "explanation"])
    if stage == "av_sft":
        responses = [f"<explanation>\n{t}\n</explanation>" for t in rows.column("explanation").to_pylist()]
        prompt = like.column("prompt").slice(0, 1).to_pylist()[0]
        rows = rows.drop(["explanation", "prompt"]) \
            .append_column("prompt", pa.array([prompt] * len(rows), like.schema.field("prompt").type)) \
            .append_column("response", pa.array(responses))
    return rows.select(like.column_names).cast(like.schema)


def main() -> None:
    global MIX, OWN, CONTENT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("step", choices=["text-rows", "content-rows", "merge"])
    ap.add_argument("--mix", type=Path, default=MIX, help="the run's folder of mixed SFT data (default %(default)s)")
    ap.add_argument("--own", default=OWN, help="the av-texts output in it: ar_sft or best-of av_sft form")
    ap.add_argument("--content", default=CONTENT, help="phase 5: av-texts' output on content_rows.parquet in --mix")
    args = ap.parse_args()
    MIX, OWN, CONTENT = args.mix, args.own, args.content
    {"text-rows": text_rows, "content-rows": content_rows, "merge": merge}[args.step]()


if __name__ == "__main__":
    sys.exit(main())

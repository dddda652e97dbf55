"""Builders for tiny objects used across tests (builder functions, not fixtures everywhere)."""

from __future__ import annotations

import json
from pathlib import Path

import torch


def smollm2_tokenizer_dir() -> Path:
    """The real SmolLM2 tokenizer, from the converted embedded model (converted once per machine)."""
    from nla_audit.embedded import ensure_embedded_model

    return ensure_embedded_model()


def build_tiny_model_dir(out: Path, seed: int = 0) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                      max_position_embeddings=1024)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


LOREM = ("The old lighthouse keeper climbed the spiral stairs every evening, counting each step aloud while the "
         "wind rattled the windows. Ships passed in the distance, their lights blinking like slow stars, and he "
         "wrote their names in a worn leather book that his father had given him many years before. ")


def text_corpus(path: Path, n_docs: int = 6, reps: int = 2) -> Path:
    return write_jsonl(path, [{"id": f"doc{i}", "text": f"Document {i}. " + LOREM * reps} for i in range(n_docs)])


def build_tiny_nla(model_dir: Path, out: Path, layer: int = 2, injection_scale: float = 4.0,
                   rank: int = 4, training: dict | None = None) -> tuple[Path, Path]:
    """An untrained AV/AR pair in nla_audit's adapter format over the tiny model (random LoRA B so it differs);
    ``training`` is both sidecars' training section (e.g. a recorded cost)."""
    from nla_audit.injection import build_token_meta
    from nla_audit.metrics import baselines
    from nla_audit.models import load_tokenizer
    from nla_audit.training.nla_models import build_ar, build_av, export_ar, export_av

    tok = load_tokenizer(str(model_dir))
    tokens = build_token_meta(tok)
    lm, _ = build_av(str(model_dir), rank, 8.0)
    for n, p in lm.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.02)
    av = export_av(lm, out / "av", str(model_dir), 64, tokens, injection_scale, "sl", [], training or {})
    lm_ar, _inner, head, _ = build_ar(str(model_dir), layer, rank, 8.0)
    base = baselines(torch.randn(64, 64), 8.0)
    ar = export_ar(lm_ar, head, out / "ar", str(model_dir), layer, tokens, base, "sl", [], training or {})
    return av, ar


def tiny_activation_parquet(tiny_model_dir, tmp_path):
    """A small ar_sft parquet+sidecar made by the real datagen writer from real tiny-model activations."""
    from nla_audit.extract import ExtractConfig, extract_activations
    from nla_audit.models import load_target

    target = load_target(str(tiny_model_dir))
    base = tmp_path / "base.parquet"
    extract_activations(ExtractConfig(out=str(base), corpus=str(text_corpus(tmp_path / "c.jsonl", 8)), layer=2,
                                      min_position=5, positions_per_doc=3), target=target, progress=False)
    return base


def tiny_rl_setup(tiny_model_dir, tmp_path):
    """(rl-stage activation parquet, untrained AV, AR) over the tiny model, for GRPO runs."""
    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar

    base = tiny_activation_parquet(tiny_model_dir, tmp_path)
    av, ar = build_tiny_nla(tiny_model_dir, tmp_path / "nla", layer=2)
    meta = read_dataset_sidecar(base)
    write_dataset_sidecar(base, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version")}, "stage": "rl"})
    return base, av, ar


def tiny_ar_sft_parquet(tiny_model_dir, tmp_path):
    """An ar_sft parquet (explanations "text i") with its sidecar, over real tiny-model activations."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.sidecar import read_dataset_sidecar, write_dataset_sidecar

    base = tiny_activation_parquet(tiny_model_dir, tmp_path)
    table = pq.read_table(base)
    table = table.append_column("explanation", pa.array([f"text {i}" for i in range(table.num_rows)]))
    data = tmp_path / "ar_sft.parquet"
    pq.write_table(table, data)
    meta = read_dataset_sidecar(base)
    write_dataset_sidecar(data, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version")},
                                 "stage": "ar_sft"})
    return data


def tiny_av_sft_parquet(tiny_model_dir, tmp_path):
    """An av_sft parquet (responses "<explanation>\\ntext i\\n</explanation>") with the tokens and templates
    `train av-sft` reads, over real tiny-model activations."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from nla_audit.injection import build_token_meta
    from nla_audit.models import load_tokenizer
    from nla_audit.sidecar import AR_TEMPLATE, AV_TEMPLATE, read_dataset_sidecar, write_dataset_sidecar

    base = tiny_activation_parquet(tiny_model_dir, tmp_path)
    table = pq.read_table(base)
    table = table.append_column("response", pa.array([f"<explanation>\ntext {i}\n</explanation>"
                                                      for i in range(table.num_rows)]))
    data = tmp_path / "av_sft.parquet"
    pq.write_table(table, data)
    meta = read_dataset_sidecar(base)
    write_dataset_sidecar(data, {**{k: v for k, v in meta.items() if k not in ("kind", "schema_version")},
                                 "stage": "av_sft", "tokens": build_token_meta(load_tokenizer(str(tiny_model_dir))).to_dict(),
                                 "prompt_templates": {"actor": AV_TEMPLATE, "critic": AR_TEMPLATE}})
    return data


def closed_port() -> int:
    """A local port nothing listens on: an API base URL there fails to connect at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def messages_api(respond):
    """A loopback stand-in for Anthropic's Messages API. ``respond(body)`` gives (content blocks, stop reason) for
    each request; every request is recorded as {path, body, headers (lower-case names)}. Returns (url, seen, server)."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["content-length"])))
            seen.append({"path": self.path, "body": body, "headers": {k.lower(): v for k, v in self.headers.items()}})
            content, stop = respond(body)
            out = json.dumps({"id": f"msg_{len(seen)}", "type": "message", "role": "assistant", "model": body["model"],
                              "content": content, "stop_reason": stop, "stop_sequence": None,
                              "usage": {"input_tokens": 11, "output_tokens": 7}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", seen, server

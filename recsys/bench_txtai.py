"""Optional comparison in `recsys bench --txtai-venv PATH`: txtai's `/search` API over the same texts.

txtai is never a dependency of recsys: it lives in a venv of its own (scripts/bench_txtai.sh makes
one). There the same texts are indexed with the same sentence-transformers model folder, and
`uvicorn txtai.api:app` serves them. wrk drives `GET /search?query={headline}&limit=5` with the
same Lua script, interleaved with recsys (cold mode). txtai has no search by stored id, so each
txtai request also embeds its query: the ratio is what a user of each API gets, not the same work.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from recsys.bench_corpus import Corpus
from recsys.bench_http import HttpConfig, Target, interleave, recsys_server, related_paths, summarize
from recsys.bench_servers import Server, free_port, uvicorn_argv
from recsys.bench_wrk import write_script
from recsys.settings import Settings

log = logging.getLogger(__name__)

INDEX_SCRIPT = """
import json, sys
from txtai import Embeddings
texts, model, out = sys.argv[1:4]
rows = [json.loads(line) for line in open(texts, encoding="utf-8")]
embeddings = Embeddings(path=model, method="sentence-transformers", content=True)
embeddings.index((r["id"], r["text"], None) for r in rows)
embeddings.save(out)
"""


def model_folder(settings: Settings) -> str:
    """The sentence-transformers folder (or hub name) recsys embeds with."""
    from recsys.embed import DEFAULT_MODEL, builtin_model_path

    name = settings.model or DEFAULT_MODEL
    return str(builtin_model_path(name, settings)) if name.startswith("builtin:") else name


def txtai_version(python: Path) -> str | None:
    """txtai's version in that interpreter, or None when it cannot be imported."""
    done = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('txtai'))"],
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def build_index(python: Path, corpus: Corpus, model: str) -> tuple[Path, float | None]:
    """txtai's index of the corpus texts, kept beside the corpus; seconds to build (None if reused)."""
    out = corpus.folder / "txtai-index"
    if (out / "config.json").exists() or (out / "config").exists():
        return out, None
    start = time.perf_counter()
    done = subprocess.run([str(python), "-c", INDEX_SCRIPT, str(corpus.folder / "texts.jsonl"), model, str(out)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"txtai indexing failed: {done.stderr[-2000:]}")
    return out, time.perf_counter() - start


def bench_txtai(corpus: Corpus, config: HttpConfig) -> dict:
    """recsys (cold) versus txtai /search, same corpus, same wrk script, interleaved rounds."""
    folder = Path(tempfile.mkdtemp(prefix="recsys-txtai-"))
    try:
        return _compare(corpus, config, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _compare(corpus: Corpus, config: HttpConfig, folder: Path) -> dict:
    python = Path(config.txtai_venv or "").absolute() / "bin" / "python"
    version = txtai_version(python) if python.exists() else None
    if version is None:
        return {"skipped": f"no importable txtai in {python}; see scripts/bench_txtai.sh"}
    index, build_s = build_index(python, corpus, model_folder(Settings()))
    (folder / "txtai.yml").write_text(f"path: {index}\nwritable: false\nembeddings: {{}}\n")
    titles = {row["id"]: row["title"] for row in corpus.texts()}
    search = [f"/search?query={urllib.parse.quote(titles[i], safe='')}&limit={config.limit}" for i in corpus.ids]
    port = free_port()
    txtai = Server("txtai", uvicorn_argv("txtai.api:app", port, python=str(python), factory=False), port,
                   "/search?query=news&limit=1", folder, {"CONFIG": str(folder / "txtai.yml")})
    with recsys_server(corpus, "cold", folder) as recsys, txtai:
        targets = [Target("txtai", txtai, write_script(folder, "txtai", search)),
                   Target("recsys", recsys, write_script(folder, "related", related_paths(corpus.ids, config.limit)))]
        interleave(targets, config)
    return {"txtai": version, "index_build_s": build_s, "model": model_folder(Settings()),
            "request": f"GET /search?query={{headline of a random stored article}}&limit={config.limit}",
            "recsys_mode": "cold", "levels": summarize(targets, config.connections, "recsys", "txtai")}

"""Fast CPU inference for `builtin:multilingual-e5-small`: ONNX export, int8 quantisation, a numpy encoder.

`export_onnx(folder)` exports the BERT of a built sentence-transformers folder with `torch.onnx.export` (opset
17, dynamic batch and sequence axes) and quantises it with ONNX Runtime's dynamic int8 (per-channel weights,
MatMul only) into `folder/onnx/model_int8.onnx`; `fp32=True` keeps the float32 `folder/onnx/model.onnx` too.
`OnnxSentenceEncoder` runs either file with ONNX Runtime and does what the folder's sentence-transformers
pipeline does (default prompt, truncation, mean pooling, L2 normalisation), so it stands in for
`SentenceTransformer` inside `recsys.embed.Embedder`. Speed and quality: docs/e5_backends.md.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model_int8.onnx"
ONNX_MANIFEST = "manifest.json"
OPSET = 17
EXPORT_FORMAT = 1  # bump when the export or quantisation recipe changes: older exports are then redone
QUANTIZATION = {"method": "quantize_dynamic", "per_channel": True, "op_types": ["MatMul"], "weight_type": "QInt8"}
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _recipe(folder: Path) -> dict:
    """What an export depends on: the recipe and the identity of the weights and config it reads."""
    from recsys.model_install import MANIFEST, _file_id

    built = {}
    try:
        built = json.loads((folder / MANIFEST).read_text()).get("files") or {}
    except (OSError, ValueError):
        pass
    source = {}
    for name in ("model.safetensors", "config.json"):
        known = built.get(name)
        path = folder / name
        fresh = known and path.is_file() and path.stat().st_size == known.get("bytes")
        source[name] = known if fresh else _file_id(path)  # the install manifest spares hashing 470 MB
    return {"format": EXPORT_FORMAT, "opset": OPSET, "inputs": list(INPUTS), "quantization": QUANTIZATION,
            "source": source}


def _export_matches(target: Path, recipe: dict, needed: set[str]) -> bool:
    """A finished export made by this recipe from these weights, holding `needed`, every file at its size."""
    try:
        manifest = json.loads((target / ONNX_MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files") or {}
    return (manifest.get("recipe") == recipe and needed <= set(files)
            and all((target / n).is_file() and (target / n).stat().st_size == f["bytes"] for n, f in files.items()))


def _export_fp32(folder: Path, path: Path) -> None:
    """torch.onnx.export of the folder's BertModel: dynamic batch and sequence axes, last_hidden_state out."""
    import torch
    from transformers import AutoModel

    class Bert(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    token_type_ids: torch.Tensor) -> torch.Tensor:
            return self.model(input_ids=input_ids, attention_mask=attention_mask,
                              token_type_ids=token_type_ids).last_hidden_state

    model = AutoModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    axes = {name: {0: "batch", 1: "sequence"} for name in (*INPUTS, "last_hidden_state")}
    # The tracer warns about shape checks it freezes (mask padding, index bounds); they hold for every batch and
    # length here, and tests/test_onnx_encoder.py checks the export against PyTorch on mixed lengths.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Bert(model), (ids, mask, torch.zeros_like(ids)), str(path), input_names=list(INPUTS),
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)


def _quantize(fp32: Path, int8: Path) -> None:
    """ONNX Runtime dynamic quantisation: int8 per-channel weights for MatMul, activations quantised at run time."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    quiet = _DropRootRecords()  # the quantiser logs one line per tensor through logging.info()
    root.addFilter(quiet)
    try:
        quantize_dynamic(str(fp32), str(int8), per_channel=True,
                         op_types_to_quantize=list(QUANTIZATION["op_types"]), weight_type=QuantType.QInt8)
    finally:
        root.removeFilter(quiet)


class _DropRootRecords(logging.Filter):
    """Drops records logged on the root logger itself below WARNING (named loggers pass)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING


def export_onnx(folder: Path, progress: bool = True, fp32: bool = False) -> Path:
    """Export (once; atomic) `folder/onnx/model_int8.onnx`, and `model.onnx` (float32) too when `fp32`.

    Returns the int8 file's path. A manifest records the recipe and the source weights' SHA-256; a matching
    export is reused. Without `fp32` the float32 file (470 MB) is only an intermediate and is not kept.
    """
    from recsys.model_install import _file_id, _json

    folder = Path(folder)
    target, recipe = folder / ONNX_DIR, _recipe(folder)
    needed = {INT8_FILE, FP32_FILE} if fp32 else {INT8_FILE}
    if _export_matches(target, recipe, needed):
        return target / INT8_FILE
    level = logging.INFO if progress else logging.DEBUG
    log.log(level, "exporting %s to ONNX and quantising to int8 (once: about 20 s)", folder)
    tmp = folder / f".{ONNX_DIR}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _export_fp32(folder, tmp / FP32_FILE)
        _quantize(tmp / FP32_FILE, tmp / INT8_FILE)
        if not fp32:
            (tmp / FP32_FILE).unlink()
        files = {p.name: _file_id(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        _json(tmp / ONNX_MANIFEST, {"recipe": recipe, "files": files})
        _swap_in(tmp, target, recipe, needed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.log(level, "exported %s", target)
    return target / INT8_FILE


def _swap_in(tmp: Path, target: Path, recipe: dict, needed: set[str]) -> None:
    """Rename a finished export into place; a stale one is moved aside first, a fresh one (a race) kept."""
    if target.exists():
        if _export_matches(target, recipe, needed):
            return
        stale = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    os.replace(tmp, target)


def _st_config(folder: Path) -> tuple[str, int, bool]:
    """The folder's default prompt, max_seq_length and whether it ends in a Normalize module."""
    def read(name: str) -> dict | list:
        path = folder / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    st = read("config_sentence_transformers.json")
    prompt = (st.get("prompts") or {}).get(st.get("default_prompt_name") or "", "")
    max_len = int(read("sentence_bert_config.json").get("max_seq_length") or 512)
    normalize = any(str(m.get("type", "")).endswith("Normalize") for m in read("modules.json"))
    return prompt, max_len, normalize


class OnnxSentenceEncoder:
    """ONNX Runtime stand-in for `SentenceTransformer(folder)` (mean pooling, optional Normalize module).

    `threads` is ONNX Runtime's intra-op thread count (default 1: one request keeps to one core); a call with
    more than one batch may run up to `workers` batches at once, each on its own core.
    """

    def __init__(self, folder: Path, quantized: bool = True, threads: int = 1, workers: int = 1,
                 export: bool = True) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        path = export_onnx(self.folder, fp32=not quantized) if export else self.folder / ONNX_DIR / INT8_FILE
        self.path = path if quantized else path.with_name(FP32_FILE)
        prompt, self.max_seq_length, self.normalize = _st_config(self.folder)
        self.prompts, self.default_prompt_name = ({"query": prompt}, "query") if prompt else ({}, None)
        self.prompt = prompt
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.max_seq_length)
        self.pad_id = self.tokenizer.token_to_id("<pad>") or 0
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = max(1, threads), 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self.workers = max(1, workers)
        self.dimension = int(self.session.get_outputs()[0].shape[-1])
        log.info("ONNX Runtime encoder %s (threads %d, workers %d)", self.path, threads, self.workers)

    def get_sentence_embedding_dimension(self) -> int:
        return self.dimension

    get_embedding_dimension = get_sentence_embedding_dimension

    def _ids(self, texts: Sequence[str], prompt: str | None) -> list[list[int]]:
        prefix = self.prompt if prompt is None else prompt
        return [e.ids for e in self.tokenizer.encode_batch([prefix + t for t in texts])]

    def tokenize(self, texts: Sequence[str], prompt: str | None = None) -> dict[str, np.ndarray]:
        """Padded `input_ids` and `attention_mask` (numpy) as this encoder feeds them, prompt included."""
        return self._pad(self._ids(texts, prompt))

    def _pad(self, ids: Sequence[list[int]]) -> dict[str, np.ndarray]:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, :len(row)], mask[i, :len(row)] = row, 1
        return {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}

    def _run(self, ids: Sequence[list[int]]) -> np.ndarray:
        """Mean-pooled vectors of a batch, one text per session run: dynamic int8 quantisation scales
        each run's activations by that run's range, so a text run with others (and their padding)
        would get a vector that depends on its batch-mates (cosine 0.996-0.999 between two batchings);
        alone it gets the same vector in every batch, as a draft, and across runs, at no loss of
        speed (no padding: 53 against 39 leads/s, docs/e5_backends.md)."""
        out = np.empty((len(ids), self.dimension), dtype=np.float32)
        for i, row in enumerate(ids):
            feed = self._pad([row])
            out[i] = self.session.run(["last_hidden_state"], feed)[0][0].mean(axis=0)
        return out

    def _batches(self, ids: list[list[int]], batch_size: int) -> Iterator[tuple[np.ndarray, list[list[int]]]]:
        order = np.argsort([-len(row) for row in ids], kind="stable")  # similar lengths share a batch
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            yield chunk, [ids[i] for i in chunk]

    def encode(self, sentences: str | Sequence[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               normalize_embeddings: bool = False, convert_to_numpy: bool = True, prompt: str | None = None,
               **_: object) -> np.ndarray:
        """float32 array [n, dim] (one row for a single string: [dim]), in the order of the input."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        if texts:
            batches = list(self._batches(self._ids(texts, prompt), max(1, batch_size)))
            workers = min(self.workers, len(batches))
            results = _progress(self._map(batches, workers), len(batches), bool(show_progress_bar))
            for (chunk, _ids), vectors in zip(batches, results):
                out[chunk] = vectors
        if self.normalize or normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out

    def _map(self, batches: list, workers: int) -> Iterator[np.ndarray]:
        if workers <= 1:
            return (self._run(ids) for _chunk, ids in batches)
        pool = ThreadPoolExecutor(workers, thread_name_prefix="onnx-encode")  # ORT releases the GIL in run()
        results = pool.map(self._run, [ids for _chunk, ids in batches])
        pool.shutdown(wait=False)
        return results


def _progress(items: Iterator[np.ndarray], total: int, show: bool) -> Iterator[np.ndarray]:
    if not show:
        return items
    from tqdm.auto import tqdm

    return iter(tqdm(items, total=total, desc="Batches"))

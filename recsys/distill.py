"""Multilingual knowledge distillation into a static-embedding student (Reimers & Gurevych 2020).

An English teacher embeds the English side of parallel pairs; the student (a multilingual subword tokenizer
plus one vector per token, averaged) learns student(English) ~ teacher(English) and student(translation) ~
teacher(English) by MSE, optionally plus in-batch InfoNCE. Output: a SentenceTransformer folder."""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from tqdm.auto import tqdm

from recsys.distill_loss import monolingual_loss, pair_loss
from recsys.embed import MINILM
from recsys.measure import top1
from recsys.teacher_cache import TeacherCache
from recsys.whitening import whiten_weights
from recsys.parallel import (  # noqa: F401 - re-exported for callers of the distill API
    HELDOUT_SETS, NO_TRANSLATION, Pair, _hash64, evaluation_sentences, is_clean, load_pairs, monolingual_sentences,
    origin_matches, lead_texts, pseudo_leads,
)

log = logging.getLogger(__name__)

SUBWORD_MARKERS = ("##", "\u2581", "\u0120")  # WordPiece, Metaspace, ByteLevel


@dataclass
class DistillConfig:
    """Settings of one distillation run; ``teacher=None`` means the bundled all-MiniLM-L6-v2."""

    teacher: str | None = None
    data_dir: Path = Path("../shared/data/parallel")
    out_dir: Path = Path("models/distilled")
    cache_dir: Path = Path("~/.cache/recsys/distill").expanduser()  # teacher embeddings, reused across runs
    langs: tuple[str, ...] = ("uk", "ru", "cs", "de", "pl", "fr", "es", "it", "nl", "pt")
    origins: tuple[str, ...] | None = None  # e.g. ("ref",) keeps *-ref rows; None keeps all
    max_pairs_per_lang: int | None = None
    heldout_langs: tuple[str, ...] = ("uk", "ru")
    heldout_per_lang: int = 1000
    heldout_sets: tuple[str, ...] = HELDOUT_SETS
    exclude_eval: Path | None = None  # shared data folder: its stsb dev/test and paraphraser sentences are never trained on
    vocab_size: int = 44_000  # 44k x 384 float16 + tokenizer.json ~ 37 MB
    epochs: int = 3
    batch_size: int = 256
    lr: float = 0.005
    contrastive_weight: float = 1.0  # 0 = plain MSE distillation
    contrastive_target: str = "student"  # InfoNCE anchor for student(translation): "student"(English) or "teacher"
    temperature: float = 0.1
    seed: int = 0
    float16: bool = True
    teacher_batch_size: int = 32
    teacher_bf16: bool = False  # autocast the teacher to bfloat16 (faster on CPUs with AVX512-BF16)
    own_targets: bool = False  # student(translation) learns teacher(translation), not teacher(English): for a
    # multilingual teacher, whose own view of each language is what the student should inherit
    whiten: float = 0.0  # after training, bake a partial whitening of strength `whiten` (0 = off, 1 = full; 0.5 is
    # what docs/students measured) of the student's sentence vectors into its token table: see whiten_weights
    whiten_center: bool = True  # subtract the mean sentence vector first
    whiten_sample: int = 24_000  # training sentences the mean and covariance are taken from
    monolingual: Path | None = None  # shared data folder: its stsb_multi_mt train sentences (cfg.langs and English)
    # are learnt as student(x) ~ teacher(x), spread over the epoch's batches
    leads: int = 0  # per language: lead-length texts joined from training sentences of that language, learnt as
    # student(x) ~ teacher(x), because served texts are title plus lead, not one sentence


def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Tokenizer:
    """A lowercased, NFKC-normalised BPE tokenizer with a word-start marker (SentencePiece style).

    BPE without a continuing-subword prefix, because the ``tokenizers`` WordPiece trainer (and BPE with a
    "##" prefix) assigns ids in hash-map order and so learns a different vocabulary on every run."""
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.normalizer = normalizers.Sequence([
        normalizers.NFKC(), normalizers.Lowercase(),
        normalizers.Replace("\u2019", "'"), normalizers.Replace("\u02bc", "'"),  # Ukrainian apostrophes
    ])
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(), pre_tokenizers.Punctuation()])
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, special_tokens=["[UNK]"], show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return tok


def token_texts(tok: Tokenizer) -> list[str]:
    """Each token's text with subword markers stripped, in id order ("" for special tokens)."""
    out = []
    for token, _ in sorted(tok.get_vocab().items(), key=lambda kv: kv[1]):
        for marker in SUBWORD_MARKERS:
            token = token.removeprefix(marker)
        out.append("" if token.startswith("[") and token.endswith("]") else token)
    return out


def _pack(tok: Tokenizer, texts: Sequence[str]) -> tuple[torch.Tensor, np.ndarray]:
    """Token ids of all texts, flat, and the start offset of each text (len(texts) + 1 entries)."""
    encs = tok.encode_batch(list(texts), add_special_tokens=False)
    lens = np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(encs))
    ids = np.fromiter(itertools.chain.from_iterable(e.ids for e in encs), dtype=np.int64, count=int(lens.sum()))
    return torch.from_numpy(ids), np.concatenate([[0], np.cumsum(lens)])


def _bag(weight: torch.Tensor, packed: tuple[torch.Tensor, np.ndarray], idx: np.ndarray) -> torch.Tensor:
    """Mean token vector of the texts ``idx`` of a packed corpus (what StaticEmbedding computes)."""
    ids, starts = packed
    spans = [ids[starts[i]:starts[i + 1]] for i in idx]
    offsets = torch.from_numpy(np.concatenate([[0], np.cumsum([len(s) for s in spans[:-1]])]).astype(np.int64))
    return F.embedding_bag(torch.cat(spans), weight, offsets, mode="mean", sparse=weight.requires_grad)


def crosslingual_top1(model: Any, src: list[str], tgt: list[str]) -> float:
    """Share of ``src`` sentences whose nearest ``tgt`` sentence by cosine is their own translation."""
    return top1(model.encode(src), model.encode(tgt))


def _training_data(cfg: DistillConfig) -> tuple[list[Pair], list[Pair]]:
    """(train, heldout) pairs, without the sentences the evaluation sets score on when asked."""
    train, heldout = load_pairs(cfg.data_dir, cfg.langs, cfg.origins, cfg.max_pairs_per_lang,
                                cfg.heldout_langs, cfg.heldout_per_lang, cfg.heldout_sets)
    if cfg.exclude_eval is not None:
        banned = evaluation_sentences(cfg.exclude_eval)
        before = len(train)
        train = [p for p in train if p[0] not in banned and p[1] not in banned]
        log.info("dropped %d training pairs that share a sentence with the evaluation sets", before - len(train))
    if not train:
        raise ValueError(f"no training pairs in {cfg.data_dir} for {cfg.langs} and origins {cfg.origins}")
    return train, heldout


def _monolingual_data(cfg: DistillConfig, heldout: list[Pair]) -> list[str]:
    """Monolingual training sentences: never a held-out sentence, nor (with exclude_eval) an evaluation one."""
    if cfg.monolingual is None:
        return []
    texts = monolingual_sentences(cfg.monolingual, (*cfg.langs, "en"))
    banned = {t for p in heldout for t in p[:2]} | (evaluation_sentences(cfg.exclude_eval) if cfg.exclude_eval else set())
    kept = [t for t in texts if t not in banned]
    log.info("%d monolingual sentences (%d dropped as held-out or evaluation text)", len(kept), len(texts) - len(kept))
    return kept


def distill(config: DistillConfig) -> Path:
    """Train the student described by ``config`` and write it as a SentenceTransformer folder to out_dir."""
    cfg = config
    if cfg.contrastive_target not in ("teacher", "student"):
        raise ValueError(f"contrastive_target must be 'teacher' or 'student', not {cfg.contrastive_target!r}")
    name = cfg.teacher or MINILM
    teacher = name  # a builtin runs through recsys's own encoder (teacher_cache), others load as they are
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    train, heldout = _training_data(cfg)
    en_pos, xx_pos = ({t: i for i, t in enumerate(dict.fromkeys(p[side] for p in train))} for side in (0, 1))
    en_texts, xx_texts = list(en_pos), list(xx_pos)
    en_idx, xx_idx = (np.array([pos[p[side]] for p in train], dtype=np.int64) for side, pos in ((0, en_pos), (1, xx_pos)))
    log.info("%d training pairs (%d English, %d translated sentences), %d heldout pairs",
             len(train), len(en_texts), len(xx_texts), len(heldout))
    mono_texts = _monolingual_data(cfg, heldout) + lead_texts(train, cfg.leads, rng)

    tok = train_tokenizer(en_texts + xx_texts + mono_texts, cfg.vocab_size)
    cache = TeacherCache(teacher, cfg.cache_dir, cfg.teacher_batch_size, cfg.teacher_bf16)
    targets = torch.from_numpy(cache.encode(en_texts))
    own = torch.from_numpy(cache.encode(xx_texts)) if cfg.own_targets else None
    mono = (_pack(tok, mono_texts), torch.from_numpy(cache.encode(mono_texts))) if mono_texts else None
    pieces = token_texts(tok)
    init = cache.encode([t or "[UNK]" for t in pieces])
    init[[i for i, t in enumerate(pieces) if not t]] = 0.0  # special tokens start at zero
    weight = torch.nn.Parameter(torch.from_numpy(init))
    en_packed, xx_packed = _pack(tok, en_texts), _pack(tok, xx_texts)
    held_en, held_xx = _pack(tok, [p[0] for p in heldout]), _pack(tok, [p[1] for p in heldout])
    opt = torch.optim.SparseAdam([weight], lr=cfg.lr)
    held_t = F.normalize(torch.from_numpy(cache.encode([p[0] for p in heldout])), dim=1).numpy() if heldout else None

    def evaluate() -> dict[str, float]:
        """Heldout top-1 both ways, and mean cosine of student(xx) and student(en) with teacher(en)."""
        res = {}
        with torch.no_grad():
            for lang in sorted({p[2] for p in heldout}):
                rows = np.array([i for i, p in enumerate(heldout) if p[2] == lang])
                a, b = (F.normalize(_bag(weight.detach(), h, rows), dim=1).numpy() for h in (held_xx, held_en))
                res[f"{lang}->en"], res[f"en->{lang}"] = top1(a, b), top1(b, a)
                res[f"cos_{lang}"], res[f"cos_en_{lang}"] = (float((x * held_t[rows]).sum(1).mean()) for x in (a, b))
        return {k: round(v, 4) for k, v in res.items()}

    history = [{"epoch": 0, **evaluate()}]
    log.info("before training: %s", history[-1])
    for epoch in range(cfg.epochs):
        loss = _epoch(weight, opt, (en_packed, xx_packed), (en_idx, xx_idx), (targets, own), cfg,
                      rng.permutation(len(train)), f"distill epoch {epoch + 1}/{cfg.epochs}",
                      mono and (*mono, rng.permutation(len(mono_texts))))
        history.append({"epoch": epoch + 1, "loss": loss, **evaluate()})
        log.info("epoch %d: %s", epoch + 1, history[-1])
    final = weight.detach()
    if cfg.whiten > 0:
        n_en, n_all = len(en_texts), len(en_texts) + len(xx_texts)
        sample = np.sort(rng.choice(n_all, min(cfg.whiten_sample, n_all), replace=False))
        parts = [(en_packed, sample[sample < n_en]), (xx_packed, sample[sample >= n_en] - n_en)]
        vectors = torch.cat([_bag(final, packed, idx) for packed, idx in parts if len(idx)]).numpy()
        final = whiten_weights(final, vectors, cfg.whiten, cfg.whiten_center)
        weight.data = final
        history.append({"epoch": "whitened", **evaluate()})
        log.info("whitened (strength %s): %s", cfg.whiten, history[-1])
    return _save(cfg, teacher, tok, final, {"train_pairs": len(train), "heldout_pairs": len(heldout),
                                            "monolingual_sentences": len(mono_texts), "history": history})


def whiten_student(student: Path | str, out_dir: Path | str, config: DistillConfig, strength: float = 0.5,
                   center: bool = True) -> Path:
    """Whiten an existing static student (e.g. recsys/models/static-multilingual) into ``out_dir``.

    The mean and covariance come from ``config.whiten_sample`` sentences of the training pairs that
    ``config`` selects (data_dir, langs, exclude_eval, heldout...): never the held-out or evaluation sentences."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(student), device="cpu")
    emb = model[0].embedding
    train, _ = _training_data(config)
    texts = list(dict.fromkeys(t for p in train for t in p[:2]))
    pick = np.random.default_rng(config.seed).choice(len(texts), min(config.whiten_sample, len(texts)), replace=False)
    sample = [texts[i] for i in sorted(pick)]
    tok: Tokenizer = model[0].tokenizer
    weight = emb.weight.detach().float()
    vectors = _bag(weight, _pack(tok, sample), np.arange(len(sample))).numpy()
    emb.weight.data = whiten_weights(weight, vectors, strength, center).to(emb.weight.dtype)
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    model.save(str(out))
    meta_path = Path(student) / "distill.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    meta["whitened"] = {"from": str(student), "strength": strength, "center": center, "sentences": len(sample),
                        "data_dir": str(config.data_dir), "exclude_eval": str(config.exclude_eval), "seed": config.seed}
    (out / "distill.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
    return out


def _epoch(weight: torch.nn.Parameter, opt: torch.optim.Optimizer, packed: tuple, idx: tuple[np.ndarray, np.ndarray],
           targets: tuple[torch.Tensor, torch.Tensor | None], cfg: DistillConfig, order: np.ndarray, label: str,
           mono: tuple | None = None) -> float:
    """One pass over the training pairs in `order`; returns the mean loss. `targets`: teacher vectors of
    the English sentences and (own_targets) of the translated ones. `mono`: (packed sentences, teacher
    vectors, order), one slice of them added to every pair batch so the epoch covers them once."""
    (en_packed, xx_packed), (en_idx, xx_idx), (t_en, t_xx) = packed, idx, targets
    total, n = 0.0, 0
    steps = range(0, len(order), cfg.batch_size)
    mono_cuts = np.linspace(0, len(mono[2]), len(steps) + 1).astype(int) if mono else None
    bar = tqdm(steps, desc=label, unit="batch")
    for n, start in enumerate(bar, 1):
        b = order[start:start + cfg.batch_size]
        loss = pair_loss(_bag(weight, en_packed, en_idx[b]), _bag(weight, xx_packed, xx_idx[b]),
                     t_en[torch.from_numpy(en_idx[b])], en_idx[b], cfg,
                     None if t_xx is None else t_xx[torch.from_numpy(xx_idx[b])])
        if mono is not None and mono_cuts[n] > mono_cuts[n - 1]:
            m = mono[2][mono_cuts[n - 1]:mono_cuts[n]]
            loss = loss + monolingual_loss(_bag(weight, mono[0], m), mono[1][torch.from_numpy(m)], cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += loss.item()
        if n % 50 == 0:
            bar.set_postfix(loss=f"{total / n:.4f}")
    return total / max(n, 1)


def _save(cfg: DistillConfig, teacher: str, tok: Tokenizer, weight: torch.Tensor, info: dict[str, Any]) -> Path:
    """Write the model beside out_dir, then rename it into place (a failed run leaves no half model)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    out = Path(cfg.out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)
        weights = weight.to(torch.float16 if cfg.float16 else torch.float32).contiguous()
        model = SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights), Normalize()], device="cpu")
        model.save(str(tmp))
        meta = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
                "teacher": teacher, **info}
        (tmp / "distill.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False), encoding="utf-8")
        for f in tmp.rglob("*"):
            f.chmod(0o755 if f.is_dir() else 0o644)
        if out.exists():
            old = out.with_name(f".{out.name}.old-{tmp.name}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    log.log(logging.WARNING if size > 40e6 else logging.INFO, "saved %s (%.1f MB; 40 MB is the budget)", out, size / 1e6)
    return out

"""recsys.distill on a tiny teacher and a tiny synthetic parallel corpus (fast, no real weights)."""

from __future__ import annotations

import gzip
import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recsys import distill as D
from recsys.distill_loss import monolingual_loss, pair_loss
from recsys import teacher_cache
from recsys.parallel import in_heldout_set

WORDS = ("the cat dog house river city news war peace market bank school road car train plane "
         "red green big small old new first last good bad sun rain day night army court").split()
CYR = dict(zip("abcdefghijklmnopqrstuvwxyz", "абцдефгхийклмнопкрстуввхиз"))


def translate(sentence: str, lang: str) -> str:
    """A fake language: each English word becomes its own Cyrillic word; uk reverses the word order."""
    words = [("ж" if lang == "uk" else "щ") + "".join(CYR[c] for c in w[::-1]) for w in sentence.split()]
    return " ".join(reversed(words) if lang == "uk" else words)


def write_corpus(data_dir: Path) -> None:
    rnd = random.Random(7)
    english = list(dict.fromkeys(" ".join(rnd.choices(WORDS, k=rnd.randint(3, 6))) for _ in range(400)))
    data_dir.mkdir(parents=True)
    for lang, sents in (("uk", english[:300]), ("ru", english[100:])):  # 200 English sentences shared
        with gzip.open(data_dir / f"train.en-{lang}.tsv.gz", "wt", encoding="utf-8") as f:
            for i, en in enumerate(sents):
                kind = "ref" if i % 2 else "hyp"
                test_set = f"wmt22-{lang}-en" if i % 3 == 0 else f"wmt24-en-{lang}"  # a third: the held-out set
                f.write(f"{en}\t{translate(en, lang)}\t{test_set}-{kind}\n")
                if i % 5 == 0:  # a second, "hyp" translation of the same English sentence
                    f.write(f"{en}\t{translate(en, lang)} !\twmt22-en-{lang}-hyp\n")
                if i % 7 == 0:  # junk that the WMT dumps hold
                    f.write(f"{en} again\tNO TRANSLATION AVAILABLE\twmt24-en-{lang}-ref\n")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and oversubscribed threads crawl on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def make_teacher(path: Path) -> str:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[UNK]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    weights = torch.from_numpy(np.random.default_rng(0).normal(size=(len(vocab), 16)).astype(np.float32))
    SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)], device="cpu").save(str(path))
    return str(path)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs distill three times with a counting teacher: trained, the same again, and untrained."""
    root = tmp_path_factory.mktemp("distill")
    write_corpus(root / "data")
    cfg = D.DistillConfig(teacher=make_teacher(root / "teacher"), data_dir=root / "data", out_dir=root / "a",
                          cache_dir=root / "cache", langs=("uk", "ru"), heldout_per_lang=20, vocab_size=300,
                          epochs=10, batch_size=32, lr=0.05, contrastive_weight=0.1, seed=3)
    encoded: list[int] = []
    original = teacher_cache._teacher_encode
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(teacher_cache, "_teacher_encode", lambda m, texts, *a: encoded.append(len(texts)) or original(m, texts, *a))
        first = D.distill(cfg)
        calls_first = list(encoded)
        second = D.distill(replace(cfg, out_dir=root / "b"))
        untrained = D.distill(replace(cfg, out_dir=root / "c", epochs=0))
    return {"cfg": cfg, "root": root, "first": first, "second": second, "untrained": untrained,
            "calls_first": calls_first, "calls_all": encoded}


def test_load_pairs_heldout_disjoint_stable_and_filtered(tmp_path):
    write_corpus(tmp_path / "data")
    train, held = D.load_pairs(tmp_path / "data", ("uk", "ru"), heldout_per_lang=20)
    assert len([p for p in held if p[2] == "uk"]) == 20 and len([p for p in held if p[2] == "ru"]) == 20
    assert not {p[0] for p in train} & {p[0] for p in held}
    assert not {p[1] for p in train} & {p[1] for p in held}
    assert D.load_pairs(tmp_path / "data", ("uk", "ru"), heldout_per_lang=20)[1] == held
    assert not [p for p in train + held if p[1] == D.NO_TRANSLATION or p[0].endswith(" again")]
    rows = [line.rstrip("\n").split("\t") for lang in ("uk", "ru")
            for line in gzip.open(tmp_path / f"data/train.en-{lang}.tsv.gz", "rt")]
    refs = {(en, xx) for en, xx, origin in rows if origin == "wmt22-uk-en-ref"}
    assert all((en, xx) in refs for en, xx, lang in held if lang == "uk")  # the held-out set's human references
    withheld = {text for en, xx, origin in rows if origin.split("-")[2:3] == ["en"] for text in (en, xx)}
    assert len(withheld) > 100 and not withheld & {t for p in train for t in p[:2]}  # split by test set
    assert in_heldout_set("wmt22-ru-en-hyp") and not in_heldout_set("wmt22-en-ru-hyp")
    ref_train, ref_held = D.load_pairs(tmp_path / "data", ("uk", "ru"), origins=("ref",), heldout_per_lang=20)
    assert ref_held == held  # the same yardstick whatever the origin filter
    assert 0 < len(ref_train) < len(train) / 2
    small, _ = D.load_pairs(tmp_path / "data", ("uk",), max_pairs_per_lang=50, heldout_per_lang=20)
    assert len(small) == 50 and all(p[2] == "uk" for p in small)
    assert D.origin_matches("wmt24-en-uk-ref", ("ref",)) and not D.origin_matches("stsb-mt", ("ref",))
    assert D.origin_matches("stsb-mt", ("stsb-mt", "echr")) and D.origin_matches("echr", None)


def test_is_clean_drops_placeholders_copies_and_length_mismatch():
    assert D.is_clean("The court ruled.", "Суд ухвалив рішення.")
    assert not D.is_clean("The court ruled.", "NO TRANSLATION AVAILABLE")
    assert not D.is_clean("2012", "2012")
    assert not D.is_clean("Translate this.", "I will not translate that sentence as requested. " * 2)


def test_train_tokenizer_normalises_and_strips_markers():
    tok = D.train_tokenizer(["Київ і Львів", "київські новини", "КИЇВ news"] * 20, vocab_size=200)
    assert tok.get_vocab_size() <= 200
    assert tok.encode("КИЇВ").tokens == tok.encode("київ").tokens
    assert tok.to_str() == D.train_tokenizer(["Київ і Львів", "київські новини", "КИЇВ news"] * 20, 200).to_str()
    assert "київ" in D.token_texts(tok) and all("\u2581" not in t for t in D.token_texts(tok))


def test_crosslingual_top1_counts_own_translation():
    class Fake:
        def encode(self, texts):
            return np.array([[1.0, 0.0] if "a" in t else [0.0, 1.0] for t in texts])
    assert D.crosslingual_top1(Fake(), ["a1", "b1"], ["a2", "b2"]) == 1.0
    assert D.crosslingual_top1(Fake(), ["a1", "b1"], ["b2", "a2"]) == 0.0


def test_saved_model_loads_with_teacher_dimension(runs):
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(runs["first"]), device="cpu")
    emb = model.encode(["the cat", "жтац жехт"])
    assert emb.shape == (2, 16)
    meta = json.loads((runs["first"] / "distill.json").read_text())
    assert meta["config"]["origins"] is None and meta["heldout_pairs"] == 40
    assert not [p.name for p in runs["root"].iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_student_moves_towards_teacher(runs):
    from sentence_transformers import SentenceTransformer

    _, held = D.load_pairs(runs["cfg"].data_dir, ("uk", "ru"), heldout_per_lang=20)
    teacher = SentenceTransformer(runs["cfg"].teacher, device="cpu")
    target = teacher.encode([p[0] for p in held], normalize_embeddings=True)

    def mse(path: Path) -> float:
        student = SentenceTransformer(str(path), device="cpu")
        return float(((student.encode([p[1] for p in held]) - target) ** 2).sum(1).mean())

    assert mse(runs["first"]) < 0.5 * mse(runs["untrained"])
    student = SentenceTransformer(str(runs["first"]), device="cpu")
    uk = [p for p in held if p[2] == "uk"]
    assert D.crosslingual_top1(student, [p[1] for p in uk], [p[0] for p in uk]) > 0.5  # chance: 0.05


def test_teacher_cache_reused_on_rerun(runs):
    assert sum(runs["calls_first"]) > 0
    assert runs["calls_all"] == runs["calls_first"]  # the second and third runs encoded nothing
    assert list(Path(runs["cfg"].cache_dir).glob("*.keys.npy"))


def test_same_seed_same_weights_and_float16(runs):
    from safetensors.torch import load_file

    a = load_file(str(runs["first"] / "model.safetensors"))["embedding.weight"]
    b = load_file(str(runs["second"] / "model.safetensors"))["embedding.weight"]
    assert a.dtype == torch.float16 and torch.equal(a, b)


def test_failed_save_keeps_the_previous_model(runs, tmp_path, monkeypatch):
    import shutil

    from sentence_transformers import SentenceTransformer

    out = tmp_path / "model"
    shutil.copytree(runs["first"], out)
    before = (out / "model.safetensors").read_bytes()

    def broken_save(self, path, *args, **kwargs):
        Path(path, "model.safetensors").write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(SentenceTransformer, "save", broken_save)
    with pytest.raises(OSError):
        D.distill(replace(runs["cfg"], out_dir=out, epochs=1))
    assert (out / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_loss_ignores_duplicate_english_as_negatives_for_both_anchors():
    t = F.normalize(torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), dim=1)
    same_english = np.array([5, 5, 7])
    for target in ("teacher", "student"):
        cfg = D.DistillConfig(contrastive_weight=1.0, contrastive_target=target, temperature=0.1)
        assert pair_loss(t.clone(), t.clone(), t, same_english, cfg).item() < 0.01  # unmasked: ~0.46
    assert pair_loss(t, t, t, same_english, D.DistillConfig(contrastive_weight=0.0)).item() == 0.0
    with pytest.raises(ValueError):
        D.distill(D.DistillConfig(contrastive_target="english"))


def test_cli_distill_writes_a_loadable_model(tmp_path):
    from sentence_transformers import SentenceTransformer

    from recsys.cli import main

    write_corpus(tmp_path / "data")
    args = ["distill", "--out", str(tmp_path / "student"), "--data-dir", str(tmp_path / "data"),
            "--teacher", make_teacher(tmp_path / "teacher"), "--langs", "uk,ru", "--epochs", "1",
            "--vocab-size", "300", "--heldout", "20", "--cache-dir", str(tmp_path / "cache")]
    assert main(args) == 0
    assert SentenceTransformer(str(tmp_path / "student"), device="cpu").encode(["жабц"]).shape == (1, 16)
    assert main(["distill", "--out", str(tmp_path / "x"), "--data-dir", str(tmp_path / "missing")]) == 2
    # --whiten-only: the trained student whitened, no training; a changed token table, same encoder shape
    whitened = tmp_path / "whitened"
    assert main(["distill", "--out", str(whitened), "--data-dir", str(tmp_path / "data"), "--langs", "uk,ru",
                 "--heldout", "20", "--whiten", "0.5", "--whiten-only", str(tmp_path / "student")]) == 0
    before = SentenceTransformer(str(tmp_path / "student"), device="cpu").encode(["жабц", "abc"])
    after = SentenceTransformer(str(whitened), device="cpu").encode(["жабц", "abc"])
    assert after.shape == before.shape and not np.allclose(after, before)
    assert json.loads((whitened / "distill.json").read_text())["whitened"]["strength"] == 0.5
    assert main(["distill", "--out", str(tmp_path / "y"), "--data-dir", str(tmp_path / "data"),
                 "--whiten-only", str(tmp_path / "student")]) == 2  # no strength given


def test_own_targets_teach_each_side_the_teachers_view_of_itself() -> None:
    t_en, t_xx = torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([[0.8, 0.6], [0.6, 0.8]])
    cfg = D.DistillConfig(contrastive_weight=0.0)
    assert pair_loss(t_en, t_xx, t_en, np.arange(2), cfg, t_xx=t_xx).item() == pytest.approx(0.0)
    # without own targets both sides learn teacher(English): the translation is 0.4 away per row (squared)
    assert pair_loss(t_en, t_xx, t_en, np.arange(2), cfg).item() == pytest.approx(0.4)


def write_sts(shared: Path) -> None:
    """A tiny stsb_multi_mt: two train pairs (en, de, ja) and one dev pair."""
    folder = shared / "stsb_multi_mt"
    folder.mkdir(parents=True)
    rows = [("t0-en", "en", "the cat sat"), ("t1-en", "en", "a dog ran"), ("t0-de", "de", "die katze sass"),
            ("t1-de", "de", "ein hund lief"), ("t0-ja", "ja", "neko"), ("t1-ja", "ja", "inu"),
            ("d0-en", "en", "dev sentence one"), ("d1-en", "en", "dev sentence two")]
    with gzip.open(folder / "articles.jsonl.gz", "wt", encoding="utf-8") as f:
        for i, lang, title in rows:
            f.write(json.dumps({"id": i, "title": title, "text": "", "lang": lang}) + "\n")
    with gzip.open(folder / "pairs.jsonl.gz", "wt", encoding="utf-8") as f:
        for a, b, split in (("t0-en", "t1-en", "train"), ("t0-de", "t1-de", "train"), ("t0-ja", "t1-ja", "train"),
                            ("d0-en", "d1-en", "dev")):
            f.write(json.dumps({"a": a, "b": b, "score": 0.5, "split": split}) + "\n")


def test_monolingual_sentences_are_train_split_in_the_languages_asked(tmp_path: Path) -> None:
    from recsys.parallel import monolingual_sentences

    write_sts(tmp_path)
    got = monolingual_sentences(tmp_path, ("de", "en"))
    assert sorted(got) == ["a dog ran", "die katze sass", "ein hund lief", "the cat sat"]  # no dev, no ja
    assert monolingual_sentences(tmp_path / "missing", ("en",)) == []


def test_mono_loss_is_zero_on_the_teacher_and_counts_squared_distance() -> None:
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    cfg = D.DistillConfig(contrastive_weight=0.0)
    assert monolingual_loss(t, t, cfg).item() == pytest.approx(0.0)
    assert monolingual_loss(torch.tensor([[0.0, 0.0], [0.0, 1.0]]), t, cfg).item() == pytest.approx(0.5)  # (1 + 0) / 2


def test_distill_learns_monolingual_sentences_it_has_no_pair_for(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    extra = ["alpha", "beta", "gamma", "delta", "omega"]  # words of no parallel pair: only the monolingual term has them
    vocab = {w: i for i, w in enumerate(["[UNK]", *WORDS, *extra])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizers.Lowercase(), pre_tokenizers.Whitespace()
    weights = torch.from_numpy(np.random.default_rng(1).normal(size=(len(vocab), 16)).astype(np.float32))
    SentenceTransformer(modules=[StaticEmbedding(tok, embedding_weights=weights)], device="cpu").save(str(tmp_path / "t"))
    write_corpus(tmp_path / "data")
    write_sts(tmp_path / "shared")
    mono = [" ".join(random.Random(i).sample(extra, 3)) for i in range(12)]
    with gzip.open(tmp_path / "shared" / "stsb_multi_mt" / "articles.jsonl.gz", "at", encoding="utf-8") as f:
        for i, text in enumerate(mono):
            f.write(json.dumps({"id": f"m{i}", "title": text, "text": "", "lang": "en"}) + "\n")
    with gzip.open(tmp_path / "shared" / "stsb_multi_mt" / "pairs.jsonl.gz", "at", encoding="utf-8") as f:
        for i in range(0, 12, 2):
            f.write(json.dumps({"a": f"m{i}", "b": f"m{i + 1}", "score": 0.5, "split": "train"}) + "\n")
    cfg = D.DistillConfig(teacher=str(tmp_path / "t"), data_dir=tmp_path / "data", cache_dir=tmp_path / "cache",
                          langs=("uk", "ru"), heldout_per_lang=20, vocab_size=300, epochs=10, batch_size=32, lr=0.05,
                          contrastive_weight=0.1, seed=3)
    with_mono = D.distill(replace(cfg, out_dir=tmp_path / "mono", monolingual=tmp_path / "shared"))
    without = D.distill(replace(cfg, out_dir=tmp_path / "plain"))
    meta = json.loads((with_mono / "distill.json").read_text())
    assert meta["monolingual_sentences"] == len(set(mono)) + 2  # and "the cat sat", "a dog ran"; no de, ja or dev
    target = SentenceTransformer(cfg.teacher, device="cpu").encode(mono, normalize_embeddings=True)
    cos = {name: float((SentenceTransformer(str(path), device="cpu").encode(mono) * target).sum(1).mean())
           for name, path in (("mono", with_mono), ("plain", without))}
    assert cos["mono"] > cos["plain"] + 0.2, cos


def test_pseudo_leads_join_sentences_of_one_language_to_lead_length() -> None:
    sentences = [f"sentence number {i} of forty characters." for i in range(100)]  # 36-37 characters each
    leads = D.pseudo_leads(sentences, 5, np.random.default_rng(0), min_chars=100, max_chars=160)
    assert len(leads) == 5
    for lead in leads:
        parts = lead.split(". ")
        assert len(parts) == 3  # two sentences (74 chars) are short of 100; three (~110) reach it
        assert 100 <= len(lead) <= 160 and all(p.startswith("sentence number") for p in parts)
    used = [p for lead in leads for p in lead.split(". ")]
    assert len({p.rstrip(".") for p in used}) == 15  # no sentence used twice
    assert len(D.pseudo_leads(sentences[:4], 5, np.random.default_rng(0), min_chars=100)) == 1


def test_lead_texts_cover_english_and_each_translated_language() -> None:
    train = [(f"english sentence {i} with some words.", f"переклад речення {i} з деякими словами.", "uk")
             for i in range(30)]
    leads = D.lead_texts(train, 2, np.random.default_rng(0))
    assert len(leads) == 4 and D.lead_texts(train, 0, np.random.default_rng(0)) == []
    assert all(t.startswith("english") for t in leads[:2]) and all(t.startswith("переклад") for t in leads[2:])

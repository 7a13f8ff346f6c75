import numpy as np
import pytest

from geoloc_ros.bovw.descriptor_codec import PQ_CENTROIDS, ProductQuantizer
from geoloc_ros.bovw.errors import DescriptorError


def clustered_descriptors(n: int, seed: int = 0) -> np.ndarray:
    """uint8 descriptors around 40 random centres (structure PQ can learn)."""
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 120, size=(40, 128))
    noise = rng.normal(0.0, 4.0, size=(n, 128))
    return np.clip(centres[rng.integers(0, 40, n)] + noise, 0, 255).astype(np.uint8)


def test_round_trip_is_close_and_deterministic():
    data = clustered_descriptors(3000)
    codec = ProductQuantizer.train(data, 16, seed=3)
    again = ProductQuantizer.train(data, 16, seed=3)
    assert np.array_equal(codec.codebook, again.codebook)
    codes = codec.encode(data)
    assert codes.dtype == np.uint8 and codes.shape == (3000, 16) and codec.code_bytes == 16
    decoded = codec.decode(codes)
    assert decoded.dtype == np.uint8 and decoded.shape == data.shape
    raw = data.astype(np.float32)
    relative = np.linalg.norm(decoded.astype(np.float32) - raw, axis=1) / np.linalg.norm(raw, axis=1)
    assert np.median(relative) < 0.1
    # Random vectors of the same norm are much further apart: the codes carry the descriptor.
    shuffled = decoded[np.random.default_rng(1).permutation(len(decoded))].astype(np.float32)
    assert np.median(np.linalg.norm(shuffled - raw, axis=1) / np.linalg.norm(raw, axis=1)) > 3 * np.median(
        relative
    )


def test_codes_are_the_nearest_centroid_of_each_subvector():
    data = clustered_descriptors(1000, seed=2)
    codec = ProductQuantizer.train(data, 8, seed=0)
    codes = codec.encode(data[:50])
    sub = data[:50].astype(np.float32).reshape(50, 8, 16)
    distances = ((sub[:, :, None, :] - codec.codebook[None]) ** 2).sum(axis=-1)  # (50, 8, 256)
    chosen = np.take_along_axis(distances, codes[:, :, None].astype(np.int64), axis=2)[..., 0]
    assert np.allclose(chosen, distances.min(axis=2), rtol=1e-5, atol=1e-3)
    # A centroid decodes to itself (rounded).
    exact = codec.decode(np.zeros((1, 8), np.uint8))[0]
    assert np.array_equal(exact, np.clip(np.rint(codec.codebook[:, 0].reshape(-1)), 0, 255).astype(np.uint8))


@pytest.mark.parametrize(
    "codebook",
    [
        np.zeros((8, PQ_CENTROIDS, 16), np.float64),  # dtype
        np.zeros((8, 16, 16), np.float32),  # centroids
        np.zeros((8, PQ_CENTROIDS, 15), np.float32),  # does not cover 128 components
        np.full((8, PQ_CENTROIDS, 16), np.nan, np.float32),
    ],
)
def test_bad_codebooks_are_refused(codebook):
    with pytest.raises(DescriptorError, match="codebook"):
        ProductQuantizer(codebook)


def test_bad_training_and_codes_are_refused():
    with pytest.raises(DescriptorError, match="divide"):
        ProductQuantizer.train(clustered_descriptors(500), 3)
    with pytest.raises(DescriptorError, match="at least 256"):
        ProductQuantizer.train(clustered_descriptors(100), 16)
    codec = ProductQuantizer.train(clustered_descriptors(500), 16)
    with pytest.raises(DescriptorError, match="codes"):
        codec.decode(np.zeros((2, 8), np.uint8))
    with pytest.raises(DescriptorError, match="descriptors"):
        codec.encode(np.zeros((2, 64), np.uint8))

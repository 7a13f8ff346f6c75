"""Exceptions of the bag-of-visual-words subpackage."""

from geoloc_ros.errors import GeolocError


class BovwError(GeolocError):
    """Root of the bovw errors."""


class FeatureInputError(BovwError, ValueError):
    """An image or mask given to the feature extractor is empty or has the wrong dtype/shape."""


class DescriptorError(BovwError, ValueError):
    """Descriptors or word ids have the wrong dtype, shape or range."""


class VocabularyError(BovwError):
    """A vocabulary cannot be trained (too few descriptors), is untrained, or its files are bad."""


class RetrievalIndexError(BovwError):
    """An inverted index is queried before it holds views, or is given inconsistent inputs/files."""


class CosimilarityError(BovwError, ValueError):
    """Co-similarity or re-ranking inputs are inconsistent (sizes, topology, parameters)."""


class FeatureKindError(BovwError, ValueError):
    """A feature kind is unknown, or registered twice or with an unusable spec."""

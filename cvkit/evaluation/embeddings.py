"""How well feature vectors separate their classes, and a 2-D map of them (``cvkit embed``).

Two scores of ``features [N, D]`` with ``labels [N]``, both by cosine distance: the mean
silhouette coefficient by class and the leave-one-out accuracy of a k-nearest-neighbour vote;
and scikit-learn's t-SNE of the features to ``[N, 2]`` points to draw. NumPy and
scikit-learn only (imported when called); no torch.
"""

from __future__ import annotations

import numpy as np

KNN_K = 5
TSNE_SEED = 0


def silhouette(features: np.ndarray, labels: np.ndarray) -> float | None:
    """The mean silhouette coefficient by class, cosine distance (scikit-learn's
    ``silhouette_score``): near 1 when every image is much closer to its own class than to
    the next, near 0 when the classes overlap. ``None`` unless 2 <= classes present < N."""
    from sklearn.metrics import silhouette_score

    present = len(np.unique(labels))
    if not 2 <= present < len(labels):
        return None
    return float(silhouette_score(features, labels, metric="cosine"))


def knn_accuracy(features: np.ndarray, labels: np.ndarray, k: int = KNN_K) -> float | None:
    """Leave-one-out accuracy of a ``k``-nearest-neighbour vote (cosine similarity; a tie
    goes to the class of the nearer neighbours). ``None`` when ``k < 1``.

    Args:
        features: ``[N, D]``; labels: ``[N]`` class indices.
    """
    if k < 1:
        return None
    x = features.astype(np.float64)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)  # leave each image out of its own vote
    nearest = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    weights = 1.0 + 1e-3 * (k - np.arange(k)) / k  # a vote; nearer breaks ties
    votes = np.zeros((len(labels), int(labels.max()) + 1))
    np.add.at(votes, (np.arange(len(labels))[:, None], labels[nearest]), weights)
    return float((votes.argmax(axis=1) == labels).mean())


def tsne_map(features: np.ndarray, seed: int = TSNE_SEED) -> tuple[np.ndarray, float]:
    """scikit-learn's t-SNE of ``features [N, D]`` to ``float32 [N, 2]`` (cosine, PCA
    start, fixed seed); returns it with the perplexity used, ``min(30, (N - 1) / 3)``."""
    from sklearn.manifold import TSNE

    perplexity = min(30.0, (len(features) - 1) / 3)
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        metric="cosine",
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return tsne.fit_transform(features).astype(np.float32), perplexity

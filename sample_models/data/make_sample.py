"""Make the bundled data sample: a stratified, seeded 20,000-image slice of the Fashion-MNIST
training set plus the full 10,000-image test set, small enough to ship in the repository.

    apt-get install dataset-fashion-mnist   # the four IDX .gz files
    python sample_models/data/make_sample.py
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

from bnnc.data import IDX_NAMES, read_idx

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
HERE = Path(__file__).resolve().parent


def stratified_indices(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """``per_class`` indices of each class, drawn without replacement, in their original order."""
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c), per_class, replace=False) for c in range(len(CLASS_NAMES))]
    return np.sort(np.concatenate(picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--per-class", type=int, default=2000, help="training images per class")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "fashion-mnist-sample.npz")
    args = parser.parse_args()

    arrays = {key: read_idx(args.source / f"{name}.gz") for key, name in IDX_NAMES.items()}
    keep = stratified_indices(arrays["y_train"], args.per_class, args.seed)
    sample = {
        "x_train": arrays["x_train"][keep],  # (N, 28, 28) uint8
        "y_train": arrays["y_train"][keep].astype(np.int64),
        "x_test": arrays["x_test"],
        "y_test": arrays["y_test"].astype(np.int64),
        "class_names": np.array(CLASS_NAMES),
    }
    with tempfile.NamedTemporaryFile(dir=args.out.parent, suffix=".tmp", delete=False) as tmp:
        np.savez_compressed(tmp, **sample)
    os.chmod(tmp.name, 0o644)  # temporary files are created private
    os.replace(tmp.name, args.out)
    counts = np.bincount(sample["y_train"], minlength=len(CLASS_NAMES)).tolist()
    print(f"{args.out}: {args.out.stat().st_size} bytes, train {len(keep)} {counts}, test {len(sample['y_test'])}")


if __name__ == "__main__":
    main()

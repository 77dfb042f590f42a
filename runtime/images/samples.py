"""Real photos that installed packages ship, found without importing those packages."""

from __future__ import annotations

import importlib.util
from pathlib import Path

# (package, path inside it): photographs only, RGB, from scikit-learn and scikit-image.
_SAMPLE_PHOTOS: tuple[tuple[str, str], ...] = (
    ("sklearn", "datasets/images/china.jpg"),
    ("sklearn", "datasets/images/flower.jpg"),
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"),
    ("skimage", "data/hubble_deep_field.jpg"),
    ("skimage", "data/retina.jpg"),
    ("skimage", "data/ihc.png"),
)


def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def sample_photos() -> list[Path]:
    """Paths of the sample photos that scikit-learn and scikit-image ship, where installed."""
    found: list[Path] = []
    roots: dict[str, Path | None] = {}
    for package, relative in _SAMPLE_PHOTOS:
        if package not in roots:
            roots[package] = _package_dir(package)
        root = roots[package]
        if root is not None and (root / relative).is_file():
            found.append(root / relative)
    return found

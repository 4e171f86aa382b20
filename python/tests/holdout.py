"""A deterministic synthetic holdout (numpy's generator): labels with prevalence ~0.3, scores
that separate them, a weaker champion, sex and age band."""

import numpy as np


def holdout(n: int = 2000, seed: int = 11):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    scores = np.clip(0.3 * y + 0.15 + 0.55 * rng.random(n), 0, 1)
    champion = np.clip(0.2 * y + 0.15 + 0.65 * rng.random(n), 0, 1)
    sex = np.where(np.arange(n) % 2 == 0, "female", "male")
    return y, scores, champion, sex

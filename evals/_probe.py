"""The linear-probe ceiling: what a linear read-out of the raw activation gets on the same question.

Fit on the task's own ``train`` items, scored on its ``eval`` items (never the other way). Two kinds:

* ``LabelProbe``: multinomial logistic regression over the option *labels* (one probe per group), on
  standardised activations, L2 strength picked by 4-fold cross-validation on the train items;
* ``EmbeddingProbe`` (suffix prediction, where options are free text): ridge regression from the activation to
  the sentence embedding of the true continuation; at test time the option whose embedding is closest wins.

It is the ceiling for *linearly available* information at that site, not an upper bound for a text reader.
"""

from __future__ import annotations

import contextlib

import torch

L2_GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0)


@contextlib.contextmanager
def single_thread():
    """Probe matrices are small: extra torch threads only add contention (30x slower next to a training job)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def _standardize(x: torch.Tensor, mu: torch.Tensor | None = None, sd: torch.Tensor | None = None):
    if mu is None:
        mu, sd = x.mean(0), x.std(0).clamp(min=1e-6)
    return (x - mu) / sd, mu, sd


def fit_logistic(x: torch.Tensor, y: torch.Tensor, n_classes: int, l2: float, steps: int = 200) -> torch.Tensor:
    """Weights [d+1, C] of an L2-regularised multinomial logistic regression (LBFGS, full batch)."""
    xb = torch.cat([x, torch.ones(len(x), 1)], 1)
    w = torch.zeros(xb.shape[1], n_classes, requires_grad=True)
    opt = torch.optim.LBFGS([w], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(xb @ w, y) + l2 * w[:-1].pow(2).sum() / len(x)
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach()


def _cv_l2(x: torch.Tensor, y: torch.Tensor, n_classes: int, folds: int = 4) -> float:
    n = len(x)
    if n < 2 * folds:
        return L2_GRID[1]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    best, best_acc = L2_GRID[1], -1.0
    for l2 in L2_GRID:
        correct = 0
        for f in range(folds):
            te = order[f::folds]
            tr = torch.cat([order[g::folds] for g in range(folds) if g != f])
            w = fit_logistic(x[tr], y[tr], n_classes, l2, steps=100)
            xb = torch.cat([x[te], torch.ones(len(te), 1)], 1)
            correct += int(((xb @ w).argmax(1) == y[te]).sum())
        if correct > best_acc:
            best, best_acc = l2, correct
    return best


class LabelProbe:
    """Logistic regression from activations to option labels; ``predict`` restricts to an item's options."""

    def __init__(self, x: torch.Tensor, labels: list[str]) -> None:
        with single_thread():
            self._fit(x, labels)

    def _fit(self, x: torch.Tensor, labels: list[str]) -> None:
        self.classes = sorted(set(labels))
        y = torch.tensor([self.classes.index(lab) for lab in labels])
        xs, self.mu, self.sd = _standardize(x.float())
        self.l2 = _cv_l2(xs, y, len(self.classes)) if len(self.classes) > 1 else 0.0
        self.w = fit_logistic(xs, y, len(self.classes), self.l2) if len(self.classes) > 1 else None
        self.train_acc = float(self.scores(x).argmax(1).eq(y).float().mean()) if self.w is not None else 1.0

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        xs, _, _ = _standardize(x.float(), self.mu, self.sd)
        if self.w is None:
            return torch.zeros(len(x), 1)
        return torch.cat([xs, torch.ones(len(xs), 1)], 1) @ self.w

    def choose(self, x: torch.Tensor, options: list[str]) -> tuple[int, list[float]]:
        """Index into ``options`` of the most probable label (labels unseen in training score -inf)."""
        s = self.scores(x.unsqueeze(0))[0]
        vals = [float(s[self.classes.index(o)]) if o in self.classes else float("-inf") for o in options]
        return max(range(len(vals)), key=lambda i: vals[i]), [round(v, 4) for v in vals]


class EmbeddingProbe:
    """Ridge regression from activations to sentence embeddings of the true option."""

    def __init__(self, x: torch.Tensor, target_emb: torch.Tensor, l2: float = 10.0) -> None:
        xs, self.mu, self.sd = _standardize(x.float())
        xb = torch.cat([xs, torch.ones(len(xs), 1)], 1)
        eye = torch.eye(xb.shape[1])
        eye[-1, -1] = 0.0
        self.w = torch.linalg.solve(xb.T @ xb + l2 * eye, xb.T @ target_emb.float())
        self.l2 = l2
        self.train_acc = float("nan")

    def choose(self, x: torch.Tensor, option_emb: torch.Tensor) -> tuple[int, list[float]]:
        xs, _, _ = _standardize(x.float().unsqueeze(0), self.mu, self.sd)
        pred = torch.nn.functional.normalize(torch.cat([xs, torch.ones(1, 1)], 1) @ self.w, dim=-1)[0]
        sims = (option_emb.float() @ pred).tolist()
        return max(range(len(sims)), key=lambda i: sims[i]), [round(s, 4) for s in sims]

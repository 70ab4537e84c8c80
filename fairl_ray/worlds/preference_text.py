"""The ``texts`` world: real texts, a continuous judge R*, Bradley–Terry preferences — no LLM, offline, minutes.

DESIGN §6b ("a world with headroom"): the outputs are real comments, by default the 3,947 comments of the
``insults`` package's train.csv (Kaggle "Detecting Insults in Social Commentary"; its test_with_solutions.csv is
left alone for independent checks). Nothing is generated, so there is no policy π0, no RLHF and no generation:
the world draws the preference pairs itself and the pipeline goes prompts (held-out set) → pairs → features →
IRL → evaluate.

* **R\\*** (``world.texts.judge``, the ``hf`` world's judge): alt-profanity-check, R* = 1 − 2·P(offensive) ∈ [−1, 1]
  (continuous, so pairs almost never tie), or an HF sequence classifier from a local directory.
* **Preferences** (Bradley–Terry from R*): two distinct texts a, b are drawn uniformly from the pool and a is
  preferred with P(a ≻ b) = σ((R*(a) − R*(b))/β). β → 0 is a noiseless annotator who always follows R*; larger β
  puts more preferences against R*. The pairs summary counts them (``against_rstar``) beside their analytical
  expectation over the drawn pairs, Σ σ(−|ΔR*|/β) (``expected_against_rstar``), and the exact R* ties
  (``rstar_ties``: for those pairs pair accuracy means nothing).
* **Labels**: the corpus' human labels where it has them (``label_field``; insults' ``Insult``: 1 → toxic −1,
  0 → non-toxic +1), else the judge's threshold. FA-IRL's supervised failures and the classification metrics use
  them, so R* and the labels disagree on some texts, as a judge and human raters do.
* **Split**: text-disjoint — test pairs are drawn among a ``pairs.test_fraction`` share of the texts, train
  pairs among the others, so no test output occurs in a train pair.
* **Pair mix, cap, preference flips**: ``pairs.*`` as for every world
  (:func:`fairl_ray.stages.pairs.finish_pairs`); ``world.texts.n_pairs`` pairs are drawn before the mix (a mix
  other than ``null`` keeps fewer).
* **Held-out labelled texts** (:meth:`TextsWorld.heldout`): ``heldout_per_class`` texts of each class (seeded),
  from the same source and removed from the pool before any pair is drawn, so they never occur in a pair.
* **Prompts**: these texts answer no prompt; every pair gets the constant ``prompt`` (default ``""``, which the
  pairs convention allows for unconditional outputs). The IRL engine never reads it.

Settings chosen before any IRL result was seen (and not tuned after):

* β = 0.1, the value DESIGN §6b measured: R* ranks the human labels at ROC-AUC .82 (.820 over the 3,933 distinct
  comments), so recovery has room both above and below R*; on the 2,000 pairs of
  ``tune_configs/fa_irl_table1.yaml`` 11.5% of preferences are expected against R* (227 drawn, 11.4%; one exact
  tie) — noise of the order FA-IRL's failures are meant to catch;
* 2,000 pairs keep an end-to-end run to minutes on 2 CPU cores;
* 300 held-out texts per class leave 739 of the 1,039 distinct insults to the pairs;
* the judge is alt-profanity-check, the offline R* of DESIGN §7.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fairl_ray.config_error import ConfigError
from fairl_ray.worlds.base import Scores, WorldPlugin
from fairl_ray.worlds.hf import (
    HFJudgeConfig,
    JudgedWorld,
    get_field,
    judge_problem,
    missing_package,
    read_records,
    resolve_path,
    unescape_text,
)

INSULTS_TRAIN = "pkg:insults/data/Inputs/train.csv"

#: The world draws its own preference pairs (:meth:`TextsWorld.make_pairs`): the pipeline plans no policy stages.
SUPPLIES_PAIRS = True


@dataclass
class TextsWorldConfig:
    """The ``texts`` world: real texts as outputs, R* a judge, preferences Bradley–Terry from R* (DESIGN §6b)."""

    source: str = INSULTS_TRAIN
    """The texts: a ``.csv``/``.jsonl`` file, ``pkg:<package>/<file>``, a dataset directory saved with
    ``save_to_disk`` or ``hf:<dataset id>``. Default: the insults comments of the ``insults`` package's train.csv."""
    split: str = "train"
    """Split of an ``hf:`` dataset or of a saved DatasetDict."""
    text_field: str = "Comment"
    """Field holding the text (dotted for nested records)."""
    label_field: str | None = "Insult"
    """Field holding a human label, > 0.5 meaning toxic (a 0/1 label or a toxicity score); null, or an empty value
    in a record: the judge's threshold labels the text."""
    unescape: bool = True
    """Decode double-escaped text (the insults CSV's ``\\\\n``, ``\\\\xc2\\\\xa0``, surrounding quotes)."""
    judge: HFJudgeConfig = field(default_factory=HFJudgeConfig)
    """R*: ``profanity_check`` (R* = 1 − 2·P(offensive)) or an HF ``classifier`` (see the ``hf`` world)."""
    beta: float = 0.1
    """Bradley–Terry temperature: P(a ≻ b) = σ((R*(a) − R*(b))/β) (DESIGN §6b: 0.1)."""
    n_pairs: int = 2000
    """Pairs drawn (distinct unordered pairs of distinct texts), before ``pairs.toxic_to_nontoxic_fraction``."""
    heldout_per_class: int = 300
    """Held-out labelled texts per class (toxic / non-toxic, by the labels above), kept out of every pair; fewer if
    a class has fewer; 0 for none."""
    prompt: str = ""
    """The prompt of every pair: the texts answer none."""
    seed: int = 0
    """Seed of the held-out draw, the pair draw and the Bradley–Terry sampling."""

    def __post_init__(self):
        if not self.source:
            raise ConfigError("source", "must name a file, pkg:<package>/<file>, a saved dataset or hf:<dataset>")
        if not (isinstance(self.beta, (int, float)) and self.beta > 0 and math.isfinite(self.beta)):
            raise ConfigError("beta", "must be a positive finite number")
        if self.n_pairs < 4:
            raise ConfigError("n_pairs", "must be at least 4")
        if self.heldout_per_class < 0:
            raise ConfigError("heldout_per_class", "must be >= 0")


def check_selected(cfg: TextsWorldConfig) -> str | None:
    """What is missing when ``texts`` is the selected world (checked at config load, not inside a Ray task)."""
    problem = missing_package(cfg.source) or judge_problem(cfg.judge)
    if problem:
        return problem
    if not cfg.source.startswith("hf:") and not resolve_path(cfg.source).exists():
        return f"source: {cfg.source} does not exist"
    return None


def make_world(cfg: TextsWorldConfig) -> TextsWorld:
    problem = check_selected(cfg)
    if problem:
        raise ValueError(f"world.texts.{problem}")
    return TextsWorld(cfg)


class TextsPlugin(WorldPlugin):
    config_class = TextsWorldConfig
    supplies_pairs = SUPPLIES_PAIRS

    def make_world(self, cfg: TextsWorldConfig) -> TextsWorld:
        return make_world(cfg)

    def check_selected(self, cfg: TextsWorldConfig) -> str | None:
        return check_selected(cfg)


def draw_pairs(n_texts: int, n_pairs: int, rng: np.random.Generator) -> np.ndarray:
    """``n_pairs`` distinct unordered pairs of distinct indices in ``range(n_texts)``, uniformly, as an (n, 2)
    array in draw order."""
    if n_pairs > n_texts * (n_texts - 1) // 2:
        raise ValueError(f"world.texts.n_pairs: {n_pairs} pairs asked of {n_texts} texts")
    seen: set[tuple[int, int]] = set()
    out: list[tuple[int, int]] = []
    while len(out) < n_pairs:  # a few rounds: duplicates are rare unless n_pairs nears the number of pairs
        for a, b in rng.integers(0, n_texts, size=(2 * (n_pairs - len(out)), 2)):
            key = (min(a, b), max(a, b))
            if a != b and key not in seen and len(out) < n_pairs:
                seen.add(key)
                out.append((int(a), int(b)))
    return np.array(out, dtype=np.int64).reshape(-1, 2)


def bradley_terry(r_a: np.ndarray, r_b: np.ndarray, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Whether a ≻ b for each pair, sampled with P(a ≻ b) = σ((R*(a) − R*(b))/β) (Bradley & Terry 1952)."""
    p_a = 1.0 / (1.0 + np.exp(-(r_a - r_b) / beta))
    return rng.random(len(p_a)) < p_a


class TextsWorld(JudgedWorld):
    """Real texts as outputs and Bradley–Terry preferences from a judge (see the module docstring); :meth:`score`
    is the judge's verdict alone (R*, the label by its threshold), the human labels enter through :meth:`corpus`."""

    name = "texts"

    def __init__(self, cfg: TextsWorldConfig):
        super().__init__(cfg)
        self._corpus: tuple[list[str], list[int], list[int]] | None = None

    # -- the corpus ------------------------------------------------------------------------------------

    def corpus(self) -> tuple[list[str], list[int], list[int]]:
        """``(texts, labels, heldout_index)``: every distinct non-empty text of the source, its label (human where
        the record has one, else the judge's) and which of them are held out (seeded, balanced)."""
        if self._corpus is None:
            c = self.cfg
            texts, human = [], []
            seen: set[str] = set()
            for rec in read_records(c.source, c.split):
                text = str(get_field(rec, c.text_field) or "")
                text = unescape_text(text) if c.unescape else text.strip()
                if not text or text in seen:  # an empty text is no output; a repeated one would pair with itself
                    continue
                seen.add(text)
                texts.append(text)
                human.append(_human_label(get_field(rec, c.label_field)) if c.label_field else 0)
            labels = human
            if not all(human):  # texts without a human label: the judge's threshold labels them
                labels = [h or j for h, j in zip(human, self.score(texts).label)]
            rng = np.random.default_rng([c.seed, 0])
            held: list[int] = []
            for lab in (-1, 1):
                idx = [i for i, y in enumerate(labels) if y == lab]
                held += [idx[int(k)] for k in rng.permutation(len(idx))[: c.heldout_per_class]]
            self._corpus = (texts, labels, held)
        return self._corpus

    def heldout(self) -> tuple[list[str], list[int]] | None:
        texts, labels, held = self.corpus()
        if not held:
            return None
        return [texts[i] for i in held], [labels[i] for i in held]

    # -- the pairs -------------------------------------------------------------------------------------

    def make_pairs(self, pairs_cfg) -> tuple[list[dict], dict]:
        """The pairs table (``fairl_ray.pairs_io`` columns) and a summary of the draw: ``world.texts.n_pairs``
        uniform pairs of the texts not held out — test pairs from a ``pairs.test_fraction`` share of the texts,
        train pairs from the rest — each ordered by a Bradley–Terry draw from R*, then the pair mix, cap and flips
        of ``pairs_cfg``."""
        from fairl_ray.stages.pairs import finish_pairs, pair_rows

        texts, labels, held = self.corpus()
        pool = sorted(set(range(len(texts))) - set(held))
        reward = np.asarray(self.score([texts[i] for i in pool]).reward)
        rng = np.random.default_rng([self.cfg.seed, 1])  # its own stream (the held-out draw uses [seed, 0])
        # Train and test pairs come from disjoint texts (a share pairs.test_fraction of the pool each way), so no
        # test output was seen in training: test metrics measure generalisation, as the held-out texts do.
        order = rng.permutation(len(pool))
        n_test_texts = int(round(pairs_cfg.test_fraction * len(pool)))
        n_test = int(round(pairs_cfg.test_fraction * self.cfg.n_pairs))
        groups = (("test", order[:n_test_texts], n_test), ("train", order[n_test_texts:], self.cfg.n_pairs - n_test))
        drawn = np.concatenate([members[draw_pairs(len(members), n, rng)] for _, members, n in groups])
        split = [name for name, _, n in groups for _ in range(n)]
        a_wins = bradley_terry(reward[drawn[:, 0]], reward[drawn[:, 1]], self.cfg.beta, rng)
        chosen = np.where(a_wins, drawn[:, 0], drawn[:, 1])
        rejected = np.where(a_wins, drawn[:, 1], drawn[:, 0])
        both = np.concatenate([chosen, rejected])
        # No subtypes: neither profanity-check nor the human labels name one.
        scores = Scores([float(reward[k]) for k in both], [labels[pool[k]] for k in both], [None] * len(both))
        outputs = [texts[pool[k]] for k in both]
        n = len(chosen)
        rows = pair_rows([self.cfg.prompt] * n, outputs[:n], outputs[n:], scores)
        for row, name in zip(rows, split):
            row["split"] = name
        gap = np.abs(reward[drawn[:, 0]] - reward[drawn[:, 1]])
        info = {
            "drawn": len(drawn),
            "texts": len(pool),
            "heldout": len(held),
            "beta": self.cfg.beta,
            # E[#against R*] over the drawn pairs: Σ σ(−|ΔR*|/β), ties excluded (they go neither way)
            "expected_against_rstar": float(np.sum(np.where(gap > 0, 1.0 / (1.0 + np.exp(gap / self.cfg.beta)), 0.0))),
        }
        too_few = f"world.texts.n_pairs={self.cfg.n_pairs} is too small"
        return finish_pairs(rows, pairs_cfg, too_few, "world.texts.n_pairs"), info

    # -- the World interface ---------------------------------------------------------------------------

    def prompt_sets(self, n_rlhf: int, n_pairs: int, n_eval: int, seed: int) -> dict[str, list[str]]:
        """No prompts: nothing is generated (the pipeline's prompts stage then only records the held-out set)."""
        return {"rlhf": [], "pairs": [], "eval": []}

    def make_prompts(self, n: int, seed: int) -> list[str]:
        return [self.cfg.prompt] * n

    def build_base_policy(self, out_dir) -> Path:
        raise NotImplementedError("world texts has no policy: its outputs are real texts, its pairs drawn directly")


def _human_label(value) -> int:
    """−1 toxic (value > 0.5), +1 non-toxic, 0 when the record has no label (empty or not a number)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return 0
    if math.isnan(v):
        return 0
    return -1 if v > 0.5 else 1


__all__ = [
    "TextsPlugin",
    "INSULTS_TRAIN",
    "SUPPLIES_PAIRS",
    "TextsWorld",
    "TextsWorldConfig",
    "bradley_terry",
    "check_selected",
    "draw_pairs",
    "make_world",
]

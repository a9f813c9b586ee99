"""End to end: the Prefect flow on a small real event with the real model and libraries."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from flows.harvest import harvest_event
from pipeline import db, editing
from pipeline import statements as statements_module
from pipeline.schema import EXPORT_STATEMENT_COLUMNS, EXPORT_THEME_COLUMNS
from pipeline.store import Layout
from tests.conftest import FIXTURES

MINI = FIXTURES / "mini-event"
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_ephemeral")]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`harvest run` as a user types it, in its own process (Prefect in ephemeral mode)."""
    work = tmp_path_factory.mktemp("run")
    env = {**os.environ, "PREFECT_HOME": str(work / "prefect"), "HARVEST_DATA": str(work / "data")}
    result = subprocess.run(
        [sys.executable, "-m", "cli.main", "run", str(MINI)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "54 statements" in result.stdout and "1 new, 0 unchanged, 0 rejected" in result.stdout
    return work / "data" / "processed" / "mini"


def test_export_has_the_contract_columns(first_run: Path) -> None:
    statements = pd.read_csv(first_run / "statements.csv", dtype=str, keep_default_na=False)
    themes = pd.read_csv(first_run / "themes.csv", keep_default_na=False)
    assert list(statements.columns[: len(EXPORT_STATEMENT_COLUMNS)]) == EXPORT_STATEMENT_COLUMNS
    assert list(themes.columns[: len(EXPORT_THEME_COLUMNS)]) == EXPORT_THEME_COLUMNS
    assert len(statements) == 54 and statements["note_id"].is_unique
    assert pd.read_parquet(first_run / "themes.parquet").shape == themes.shape
    # every theme's members are the statements pointing at it; ranks run 1..k per question
    for _, theme in themes.iterrows():
        members = statements[statements.theme_id == theme.theme_id]
        assert theme.n_tables == members[["table", "round"]].drop_duplicates().shape[0]
    for _, group in themes.groupby(["topic", "question"]):
        assert sorted(group["rank"]) == list(range(1, len(group) + 1))
        assert group.sort_values("rank")["n_tables"].is_monotonic_decreasing
    assert (themes["status"] != "off-topic").all()  # the session remarks are no theme: not among the top


def test_themes_match_what_the_tables_said(first_run: Path) -> None:
    statements = pd.read_csv(first_run / "statements.csv", dtype=str, keep_default_na=False)
    themes = pd.read_csv(first_run / "themes.csv", keep_default_na=False).set_index("theme_id")

    def theme_of(text: str) -> str:
        return statements.loc[statements.text == text, "theme_id"].iloc[0]

    # paraphrases from different tables land together, different ideas apart
    assert theme_of("banks and investors must be on board") == theme_of("without the banks nothing moves")
    assert theme_of("DIH-cluster partnerships") == theme_of("link clusters and DIHs")
    assert theme_of("DIH-cluster partnerships") != theme_of("banks and investors must be on board")
    # chatter is flagged and kept in its question's off-topic theme, ranked last
    chatter = statements[
        statements.text.isin(["see flipchart photo", "host: Anna", "question not clear to us"])
    ]
    assert (chatter["flag"] == "off-topic").all() and chatter["theme_id"].str.endswith(".off-topic").all()
    assert (chatter["status"] == "off-topic").all() and not themes.index.isin(chatter["theme_id"]).any()
    review = pd.read_parquet(first_run / "review_themes.parquet").set_index("theme_id")  # editors see them
    off_topic = review.loc[chatter["theme_id"].unique()]
    assert (off_topic["status"] == "off-topic").all()
    last = review.groupby(["topic", "question"])["rank"].max()
    assert all(last[(t.topic, t.question)] == t["rank"] for _, t in off_topic.iterrows())
    top_green = themes[(themes.topic == "green") & (themes["rank"] == 1)].iloc[0]
    assert top_green.n_tables >= 8 and top_green.label


def test_paper_is_readable_and_traceable(first_run: Path) -> None:
    md = (first_run / "paper.md").read_text()
    html = (first_run / "paper.html").read_text()
    themes = pd.read_csv(first_run / "themes.csv", keep_default_na=False)
    assert "## World cafe" in md and "#### Who are the key actors in the green transition?" in md
    best = themes.sort_values(["topic", "rank"]).iloc[0]
    assert f"**{best.recommendation}** (raised at {best.n_tables} of " in md
    assert best.theme_id in md and best.theme_id in html
    statements = pd.read_csv(first_run / "statements.csv", dtype=str, keep_default_na=False)
    off_topic = set(statements.loc[statements.status == "off-topic", "theme_id"])
    assert off_topic and not any(t in md or t in html for t in off_topic)
    assert '<figure class="chart"' in html and "<script" not in html and "://" not in html  # self-contained


def test_rerun_is_deterministic_and_incremental(first_run: Path, tmp_path: Path) -> None:
    data = first_run.parent.parent
    cache = Layout(data, "mini").embedding_cache
    shards = sorted(cache.rglob("*.npz"))
    assert shards
    summary = harvest_event(MINI, data, tmp_path / "again")
    assert (summary["accepted"], summary["unchanged"]) == (0, 1)
    assert sorted(cache.rglob("*.npz")) == shards  # nothing re-embedded
    for name in ("statements.csv", "themes.csv", "paper.md", "paper.html"):
        assert (tmp_path / "again" / name).read_bytes() == (first_run / name).read_bytes(), name
    from threadpoolctl import threadpool_info

    blas = [pool for pool in threadpool_info() if pool["user_api"] == "blas"]
    assert blas and all(pool["num_threads"] == 1 for pool in blas)  # the run's small products, one core


def test_unseen_event_layout_runs_without_changes(tmp_path: Path) -> None:
    """Notes beside event.yaml (no notes/ folder), as XLSX, DOCX and Markdown."""
    event_dir = tmp_path / "other-event"
    event_dir.mkdir()
    shutil.copy(FIXTURES / "event.yaml", event_dir / "event.yaml")
    for name in ("table-notes.xlsx", "table-notes.md"):
        shutil.copy(FIXTURES / name, event_dir / name)
    (event_dir / "t04.md").write_text(
        (FIXTURES / "table-notes.md").read_text().replace("green-t03", "green-t04")
    )
    harvest_event(event_dir, tmp_path / "data")
    statements = pd.read_csv(tmp_path / "data/processed/fixture-event/statements.csv", keep_default_na=False)
    assert set(statements["table"]) == {"green-t03", "green-t04"}
    german = statements[statements.language == "de"]
    assert len(german) and set(german.language_route) <= {"multilingual", "awaiting"}  # none dropped
    assert ((german.flag == "language") == (german.language_route == "awaiting")).all()


def test_dask_task_runner_gives_the_same_result(
    first_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Embedding chunks and topic x question groups on a local Dask cluster of two worker processes,
    from an empty embedding cache, so the workers encode as well as cluster."""
    monkeypatch.setenv("HARVEST_TASK_RUNNER", "dask")
    monkeypatch.setenv("HARVEST_DASK_WORKERS", "2")
    monkeypatch.setattr("flows.harvest.ENCODE_CHUNK", 20)  # several chunks even for 54 statements
    summary = harvest_event(MINI, tmp_path / "data")
    assert summary["groups_clustered"] == 2
    out = Path(summary["out"])
    cache = Layout(tmp_path / "data", "mini").embedding_cache
    assert len(list(cache.rglob("*.npz"))) >= 3  # one shard per encoded chunk
    for name in ("statements.csv", "themes.csv"):
        assert (out / name).read_bytes() == (first_run / name).read_bytes(), name


def test_questions_clustered_one_at_a_time_give_the_same_result(
    first_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`harvest run` clusters a small event's questions side by side, one a core (the first run, on a
    machine of two or more), and one at a time when their memory would not fit side by side (as for
    large groups at a million statements; here every group's): the same outputs."""
    monkeypatch.setattr("flows.harvest.MEMORY_BOUNDED_FROM", 0)
    monkeypatch.setattr("flows.harvest.CLUSTERING_MEMORY", 0)
    summary = harvest_event(MINI, tmp_path / "data")
    assert summary["groups_clustered"] == 2
    for name in ("statements.csv", "themes.csv", "paper.md"):
        assert (Path(summary["out"]) / name).read_bytes() == (first_run / name).read_bytes(), name


def test_a_group_starts_as_soon_as_any_group_under_way_is_done(monkeypatch: pytest.MonkeyPatch) -> None:
    """With every worker busy, the next group waits for whichever group finishes first, not for the
    first one submitted: here the first group ends only once the third has started."""
    import threading

    import numpy as np
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.task_runners import ThreadPoolTaskRunner

    import flows.harvest as fh
    from pipeline.config import Settings
    from pipeline.incremental import RunPlan

    third_started = threading.Event()

    @task(cache_policy=NO_CACHE)
    def stand_in(key: str, *_: object) -> tuple[str, bool]:
        if key == "t/third":
            third_started.set()
        # the first group waits for the third (a bound, so that the old order fails rather than hangs)
        return key, third_started.wait(timeout=60) if key == "t/first" else True

    keys = ["t/first", "t/second", "t/third"]
    plan = RunPlan({key: np.array([i]) for i, key in enumerate(keys)}, {}, {})
    statements = pd.DataFrame({"statement_id": ["a", "b", "c"]})
    glossaries = {("t", key.split("/")[1]): {} for key in keys}
    monkeypatch.setattr(fh, "synthesise", stand_in)
    monkeypatch.setattr(fh, "LOCAL_WORKERS", 2)

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))  # type: ignore[arg-type]
    def themes_stage() -> dict:
        embeddings, flags = np.zeros((3, 2)), np.array(["", "", ""], dtype=object)
        return fh._synthesised(plan, statements, embeddings, flags, glossaries, Settings(), Path("."))

    assert themes_stage() == {key: (key, True) for key in keys}


def test_labels_parsed_beside_a_forked_helper_give_the_same_result(
    first_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cold run of 5,000 statements or more shares its labels' parse with a forked copy of the flow's
    process (``labels.shared_parse``), from inside Prefect's task threads: the same outputs."""
    import weakref

    import pipeline.labels as labels

    monkeypatch.setattr("flows.harvest.SHARED_PARSE_STATEMENTS", range(1, 10**6))  # so the mini event does
    monkeypatch.setattr(labels, "SHARED_PARSE_FROM", 1)
    monkeypatch.setattr(labels, "_TERMS", weakref.WeakKeyDictionary())  # nothing parsed yet in this process
    shared: list[int] = []
    share = labels._ParseHelper.share

    def counted(self: labels._ParseHelper, texts: list[str], nlp: object) -> list:
        shared.append(len(texts))
        return share(self, texts, nlp)  # type: ignore[arg-type]

    monkeypatch.setattr(labels._ParseHelper, "share", counted)
    summary = harvest_event(MINI, tmp_path / "data")
    assert summary["groups_clustered"] == 2 and len(shared) == 2 and all(shared)
    assert not labels._HELPERS  # the helper ended with the stage
    for name in ("statements.csv", "themes.csv", "paper.md"):
        assert (Path(summary["out"]) / name).read_bytes() == (first_run / name).read_bytes(), name


def test_one_new_table_changes_only_its_question(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    event_dir = tmp_path / "event"
    shutil.copytree(MINI, event_dir)
    data = tmp_path / "data"
    harvest_event(event_dir, data)
    split: list[int] = []  # the notes each run splits and detects the language of
    splitting = statements_module.notes_to_statements
    monkeypatch.setattr(
        statements_module,
        "notes_to_statements",
        lambda notes, *args: split.append(len(notes)) or splitting(notes, *args),
    )
    out = data / "processed" / "mini"
    themes_before = pd.read_csv(out / "themes.csv", keep_default_na=False)
    cache = Layout(data, "mini").embedding_cache
    statement_shards = "*/*.npz"  # the statements' vectors (phrases/ keeps joint recommendations' apart)
    shards_before = set(cache.glob(statement_shards))
    with db.session_scope(f"sqlite:///{data / 'harvest.db'}") as session:  # a theme no run has made
        editing.rename(session, "mini", "ann", "green.actors.gone", "green", "actors", "Old theme")

    (event_dir / "notes" / "green-t99.csv").write_text(
        "table,round,topic,question,text\n"
        "green-t99,1,green,actors,banks and investors have to join in\n"
        "green-t99,1,green,actors,citizens as consumers drive the change\n"
    )
    summary = harvest_event(event_dir, data)
    assert (summary["accepted"], summary["unchanged"]) == (1, 1)
    assert (summary["groups_clustered"], summary["groups_reused"]) == (1, 1)
    assert summary["unmatched_decisions"] == 1  # said, not silently dropped
    assert len(set(cache.glob(statement_shards)) - shards_before) == 1  # only the new statements
    assert split == [2]  # only the new notes went through spaCy and lingua: the others kept theirs

    themes_after = pd.read_csv(out / "themes.csv", keep_default_na=False)
    untouched = themes_before[themes_before.question == "policy"].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        themes_after[themes_after.question == "policy"].reset_index(drop=True), untouched
    )
    statements = pd.read_csv(out / "statements.csv", keep_default_na=False)
    new = statements[statements.table == "green-t99"]
    assert len(new) == 2
    # the new table joins the theme its note belongs to: the theme keeps its id and its members
    banks = new.loc[new.text.str.startswith("banks"), "theme_id"].iloc[0]
    assert banks in set(themes_before["theme_id"])
    before, after = (t.set_index("theme_id").loc[banks] for t in (themes_before, themes_after))
    assert after.n_tables > before.n_tables
    assert set(before.statement_ids.split("; ")) <= set(after.statement_ids.split("; "))


def test_a_run_can_leave_the_docx_and_pdf_to_later(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`harvest run --no-documents` writes the export and the paper's HTML and Markdown, not its DOCX and
    PDF (most of a run after one new table at 8,000 notes); the next `harvest run` writes them."""
    from typer.testing import CliRunner

    from cli.main import app

    monkeypatch.setenv("HARVEST_DATA", str(tmp_path / "data"))
    published = tmp_path / "data" / "processed" / "mini"
    quick = CliRunner().invoke(app, ["run", str(MINI), "--no-documents"])
    assert quick.exit_code == 0, quick.output
    assert "paper.docx and paper.pdf: not written (--no-documents)" in quick.output
    assert (published / "paper.html").exists() and (published / "statements.csv").exists()
    assert not (published / "paper.docx").exists() and not (published / "paper.pdf").exists()
    full = CliRunner().invoke(app, ["run", str(MINI)])
    assert full.exit_code == 0, full.output
    assert "0 new, 1 unchanged" in full.output
    assert (published / "paper.docx").stat().st_size > 0 and (published / "paper.pdf").stat().st_size > 0

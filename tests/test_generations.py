"""Output generations: a reader sees one run's files or the next one's, never a mix, and a failed or
killed run leaves the outputs as they were."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pipeline.store import Layout, write_text


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(tmp_path / "data", "mini")


def publish_texts(layout: Layout, **texts: str) -> None:
    with layout.generation() as new:
        for name, text in texts.items():
            write_text(new.layout.processed / name, text)
        new.commit()


def read(layout: Layout, name: str) -> str:
    return (layout.processed / name).read_text()


def test_the_output_folder_is_a_link_to_the_current_generation(layout: Layout) -> None:
    publish_texts(layout, **{"paper.md": "run 1", "statements.csv": "s1"})
    assert layout.processed.is_symlink()
    assert layout.processed.resolve().parent == layout.generations
    assert read(layout, "paper.md") == "run 1"


def test_a_generation_starts_from_the_current_files_and_does_not_change_them(layout: Layout) -> None:
    publish_texts(layout, **{"paper.md": "run 1", "statements.csv": "s1"})
    with layout.generation() as new:
        assert (new.layout.processed / "statements.csv").read_text() == "s1"  # carried over
        write_text(new.layout.processed / "statements.csv", "s2")
        # before the switch a reader still sees the first run's files, all of them
        assert (read(layout, "paper.md"), read(layout, "statements.csv")) == ("run 1", "s1")
        new.commit()
    assert (read(layout, "paper.md"), read(layout, "statements.csv")) == ("run 1", "s2")


def test_a_run_that_fails_before_its_switch_leaves_the_outputs_and_no_folder(layout: Layout) -> None:
    publish_texts(layout, **{"paper.md": "run 1", "statements.csv": "s1"})
    with pytest.raises(RuntimeError), layout.generation() as new:
        write_text(new.layout.processed / "statements.csv", "half of run 2")
        raise RuntimeError("killed between two files")
    assert (read(layout, "paper.md"), read(layout, "statements.csv")) == ("run 1", "s1")
    assert [p.name for p in layout.generations.iterdir()] == [layout.processed.resolve().name]


def test_the_replaced_generation_stays_for_readers_and_older_ones_go(layout: Layout) -> None:
    for run in range(1, 5):
        publish_texts(layout, **{"paper.md": f"run {run}"})
    replaced_and_current = {p for p in layout.generations.iterdir() if p.is_dir()}
    assert len(replaced_and_current) == 2
    assert {(p / "paper.md").read_text() for p in replaced_and_current} == {"run 3", "run 4"}


def test_a_generation_still_being_made_is_not_removed_by_another_writer(layout: Layout) -> None:
    publish_texts(layout, **{"paper.md": "run 1"})
    with layout.generation() as slow:
        publish_texts(layout, **{"paper.md": "run 2"})
        publish_texts(layout, **{"paper.md": "run 3"})
        assert slow.folder.is_dir()
        write_text(slow.layout.paper_md, "run 4")
        slow.commit()
    assert read(layout, "paper.md") == "run 4"


def test_a_killed_writers_generation_is_removed_at_the_next_switch(layout: Layout) -> None:
    publish_texts(layout, **{"paper.md": "run 1"})
    orphan = layout.generations / "20200101T000000000000-1"  # its writer's lock is gone with it
    orphan.mkdir()
    (orphan / "paper.md").write_text("half")
    publish_texts(layout, **{"paper.md": "run 2"})
    assert not orphan.exists()


def test_an_output_folder_of_an_earlier_release_becomes_the_first_generation(layout: Layout) -> None:
    layout.processed.mkdir(parents=True)
    (layout.processed / "statements.parquet").write_text("earlier")
    (layout.processed / "embeddings").mkdir()
    (layout.processed / "embeddings" / "model-0.npz").write_text("vectors")
    publish_texts(layout, **{"paper.md": "run 1"})
    assert layout.processed.is_symlink()
    assert read(layout, "statements.parquet") == "earlier"
    assert not (layout.processed / "embeddings").exists()
    assert (layout.embedding_cache / "model-0.npz").read_text() == "vectors"  # moved, not made again


def test_a_folder_harvest_did_not_write_is_never_taken_over(tmp_path: Path) -> None:
    users = tmp_path / "Desktop"
    users.mkdir()
    (users / "thesis.docx").write_text("years of work")
    layout = Layout(tmp_path / "data", "mini", out=users)
    with pytest.raises(FileExistsError, match="did not write"):
        publish_texts(layout, **{"paper.md": "run 1"})
    assert not users.is_symlink() and (users / "thesis.docx").read_text() == "years of work"


def test_every_generation_of_an_out_folder_lives_beside_it(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere" / "ecc"
    layout = Layout(tmp_path / "data", "mini", out=out)
    publish_texts(layout, **{"paper.md": "run 1"})
    assert out.is_symlink() and read(layout, "paper.md") == "run 1"
    assert layout.generations.parent == out.parent
    assert os.readlink(out).startswith(".ecc.generations")  # relative: the folder may be moved whole

"""The README's generated tables (configuration from Settings, task types from the catalog) stay in sync."""

from __future__ import annotations

import pytest

from tests.support.scripts import ROOT, load_script


@pytest.mark.parametrize("script", ["settings_table", "task_types_table"])
def test_readme_generated_table_is_current(script: str) -> None:
    module = load_script(script)
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index(module.BEGIN) + len(module.BEGIN) : readme.index(module.END)]
    assert section.strip() == module.table().strip(), f"run: python scripts/{script}.py --write"


def test_task_types_table_has_a_row_per_catalog_entry() -> None:
    from taskservice.catalog import CATALOG

    rows = load_script("task_types_table").table().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list(CATALOG)
    assert "| `evaluate_department` | cpu_intensive | 4.5 / 5 min | 75 s |" in rows
    assert "| `test_prompt` | default | 108 s / 2 min | 10 s |" in rows
    assert "| `run_sd_inference` (seed 004, = `generate_image`) | gpu_medium | 4.5 / 5 min | 60 s |" in rows


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make dev" in readme and "make test" in readme

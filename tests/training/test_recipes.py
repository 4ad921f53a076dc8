"""The shipped training recipes load as TrainConfigs and name model fields that exist."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from model.config import PoseModelConfig
from training.config import TrainConfig

RECIPES = sorted((Path(__file__).resolve().parents[2] / "training" / "recipes").glob("*.yaml"))


def test_there_are_recipes():
    assert {p.name for p in RECIPES} >= {"temporal-vtest.yaml", "temporal-vtest-diffusion.yaml"}


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.name)
def test_recipe_loads(path):
    tc = TrainConfig.load(str(path))
    fields = {f.name for f in dataclasses.fields(PoseModelConfig)}
    assert set(tc.model_overrides) <= fields
    assert tc.steps > 0 and tc.train_data

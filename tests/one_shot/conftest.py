"""Fixtures of the one-shot tests."""

from __future__ import annotations

import pytest
from tvm.s_tir import meta_schedule as ms


@pytest.fixture
def no_build_or_run(monkeypatch):
    """Any builder, runner or measurement made anywhere fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("one-shot mode made a builder or runner")

    monkeypatch.setattr(ms.builder.LocalBuilder, "__init__", refuse)
    monkeypatch.setattr(ms.runner.LocalRunner, "__init__", refuse)
    monkeypatch.setattr("ms_meta.one_shot.run.measure", refuse)
    monkeypatch.setattr("ms_meta.one_shot.run.make_local_runner", refuse)

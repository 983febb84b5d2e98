"""Fixtures of the pipeline's tests."""

from __future__ import annotations

import pytest

import integral_pipeline

from .helpers import TEST_WORKFLOWS, register_test_workflows


@pytest.fixture
def workflows():
    """Register the test workflows; remove them afterwards."""
    register_test_workflows()
    yield
    for name in TEST_WORKFLOWS:
        integral_pipeline.unregister_workflow(name)

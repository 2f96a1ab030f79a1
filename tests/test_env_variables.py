"""rqakit.env.environment: variables set for a block, then restored or unset as they were."""
import os

import pytest

from rqakit.env import environment


def test_variables_are_restored_or_unset_after_the_block_even_when_it_raises(monkeypatch):
    monkeypatch.setenv("RQAKIT_TEST_SET", "before")
    monkeypatch.delenv("RQAKIT_TEST_UNSET", raising=False)
    with pytest.raises(RuntimeError):
        with environment(RQAKIT_TEST_SET="inside", RQAKIT_TEST_UNSET="inside"):
            assert os.environ["RQAKIT_TEST_SET"] == os.environ["RQAKIT_TEST_UNSET"] == "inside"
            raise RuntimeError
    assert os.environ["RQAKIT_TEST_SET"] == "before" and "RQAKIT_TEST_UNSET" not in os.environ

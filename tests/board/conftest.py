import pytest

from board_nets import tiny_network


@pytest.fixture
def tiny():
    return tiny_network()

"""The shared validators comparisons use: run parameters (core.params) and prices (core.prices)."""

from __future__ import annotations

import math

import pytest

from core.errors import InvalidInput
from core.params import clean_params
from core.prices import Price, model_prices, parse_price, price_for, run_cost


def test_clean_params_keeps_valid_values_with_their_types():
    given = {"temperature": 1, "top_p": 0.5, "max_tokens": 256.0, "seed": -3, "presence_penalty": -2,
             "frequency_penalty": 2.0, "stop": ["\n\n", "END"]}
    cleaned = clean_params(given)
    assert cleaned == {"temperature": 1.0, "top_p": 0.5, "max_tokens": 256, "seed": -3, "presence_penalty": -2.0,
                       "frequency_penalty": 2.0, "stop": ["\n\n", "END"]}
    assert isinstance(cleaned["temperature"], float) and isinstance(cleaned["max_tokens"], int)
    assert clean_params({"temperature": None, "seed": ""}) == {} and clean_params(None) == {}
    assert clean_params({"stop": "###"}) == {"stop": "###"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 10.5}, "max_tokens"),
        ({"seed": 2**31}, "seed"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": math.inf}, "temperature"),
        ({"max_tokens": float("inf")}, "max_tokens"),
        ({"temperature": True}, "temperature"),
        ({"seed": False}, "seed"),
        ({"temperature": "0.5"}, "temperature"),
        ({"top_p": [0.5]}, "top_p"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": [""]}, "stop"),
        ({"stop": 3}, "stop"),
        ({"logit_bias": {}, "n": 2}, "logit_bias, n"),
        ([("temperature", 1)], "params"),
    ],
)
def test_clean_params_refuses_with_the_field_named(params, field):
    with pytest.raises(InvalidInput) as info:
        clean_params(params)
    assert field in info.value.message


def test_a_price_is_a_dict_or_a_pair_in_usd_per_million_tokens(settings):
    assert parse_price({"prompt": 2.5, "completion": 10}) == Price(2.5, 10.0)
    assert parse_price([2.5, 10]) == parse_price((2.5, 10)) == Price(2.5, 10.0)
    assert parse_price({"completion": 1}) == Price(0.0, 1.0)
    for bad in ({}, [], [1], [1, 2, 3], "2.5", None, [True, 1], [float("nan"), 1], {"prompt": -1}, ["x", 1]):
        assert parse_price(bad) is None, bad
    assert Price(1.0, 2.0).cost(1000, 500) == pytest.approx(0.002)
    settings.ARBOR_MODEL_PRICES = {"a": [1, 2], "b": {"prompt": 3}, "broken": "free"}
    assert model_prices() == {"a": Price(1.0, 2.0), "b": Price(3.0, 0.0)}
    assert price_for("broken") is None and price_for("unknown") is None
    assert run_cost("a", 1_000_000, 1_000_000) == pytest.approx(3.0)
    assert run_cost("a", None, 5) is None and run_cost("unknown", 1, 1) is None

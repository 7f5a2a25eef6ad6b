"""The value rules: what each accepts, and the one line it says otherwise."""
from __future__ import annotations

import pytest

from imdn_plugin.errors import ConfigError
from imdn_plugin.options.fields import Bool, Choice, Int, ListOf, Maybe, Num, OptionError, number_hint, show


@pytest.mark.parametrize(
    "text, advice",
    [
        ("2e-4", "write 2e-4 as 2.0e-4 or !!float 2e-4"),
        ("1e-3", "write 1e-3 as 1.0e-3 or !!float 1e-3"),
        ("5e3", "write 5e3 as 5.0e+3 or !!float 5e3"),  # YAML 1.1 needs the exponent's sign
        ("1.5E2", "write 1.5E2 as 1.5e+2 or !!float 1.5E2"),
        ("-3e2", "write -3e2 as -3.0e+2 or !!float -3e2"),
        ("0.5", "write it without quotes"),
    ],
)
def test_a_number_written_as_a_string_gets_the_yaml_advice(text: str, advice: str) -> None:
    import yaml

    from imdn_plugin.options import parse_yaml

    assert advice in number_hint(text)
    if "as " in advice:  # the advised spelling really is a float to the loader, and equal
        spelled = advice.split(" as ")[1].split(" or ")[0]
        assert parse_yaml(f"x: {spelled}", "t")["x"] == float(text)
        assert isinstance(yaml.safe_load(f"x: {text}")["x"], str)  # and the original is not
    with pytest.raises(OptionError) as err:
        Num(0)(text, "train:optim_g:lr")
    assert str(err.value).startswith("train:optim_g:lr: must be a number >= 0 (YAML reads") and advice in str(err.value)


@pytest.mark.parametrize("text", ["abc", "", "1e", "e5", "1.2.3", "--1"])
def test_no_advice_for_strings_that_are_not_numbers(text: str) -> None:
    assert number_hint(text) == ""


def test_int_bounds_and_whole_floats() -> None:
    rule = Int(1, 10, whole=True)
    assert rule(5.0, "k") == 5 and type(rule(5.0, "k")) is int
    assert rule(1, "k") == 1 and rule(10, "k") == 10
    for bad in (0, 11, 2.5, True, "3", None, [1], {"a": 1}, float("inf"), float("nan")):
        with pytest.raises(OptionError, match=r"^k: must be a whole number from 1 to 10\b"):
            rule(bad, "k")
    with pytest.raises(OptionError):
        Int(1)(5.0, "k")  # without whole=True a float is not an integer


def test_num_open_bounds_and_non_finite() -> None:
    rule = Num(0, 1, hi_open=True)
    assert rule(0, "k") == 0 and rule(0.999, "k") == 0.999
    for bad in (1, 1.0, -0.1, float("nan"), float("inf"), True):
        with pytest.raises(OptionError, match=r"^k: must be a number >= 0 and < 1, got "):
            rule(bad, "k")


def test_choice_and_bool_do_not_mix_numbers_and_booleans() -> None:
    assert Choice(None, "bf16")(None, "k") is None
    with pytest.raises(OptionError):
        Choice(1, 2)(True, "k")  # True == 1 in Python, not in an option file
    with pytest.raises(OptionError, match=r"^k: must be true or false, got 1$"):
        Bool()(1, "k")
    with pytest.raises(OptionError, match=r"did you mean 'mean'"):
        Choice("none", "mean", "sum")("maen", "k")


def test_lists_name_the_bad_element() -> None:
    with pytest.raises(OptionError, match=r"^k\[1\]: must be an integer >= 1, got 0$"):
        ListOf(Int(1))([3, 0], "k")
    with pytest.raises(OptionError, match=r"^k: must be a list of 2 values"):
        ListOf(Num(), length=2)([0.9], "k")


def test_optional_says_what_none_means() -> None:
    with pytest.raises(OptionError) as err:
        Maybe(Int(4), "no tiling")(2, "inference:tile")
    assert str(err.value) == "inference:tile: must be an integer >= 4 or ~ (no tiling), got 2"
    assert err.value.key == "inference:tile" and err.value.none_means == "no tiling" and err.value.value == 2
    assert isinstance(err.value, ConfigError) and isinstance(err.value, ValueError)


def test_show_keeps_errors_short() -> None:
    assert show(10**5000) == "a 5001-digit integer"
    assert show(-(10**400)).endswith("-digit integer")
    assert len(show("x" * 10_000)) <= 60 and show(None) == "~" and show(True) == "true"
    assert show({"a": 1, "b": 2}) == "a mapping {a, b}"

"""The NIR key and format rules (CNAM nir-validation library semantics)."""

from __future__ import annotations

import pytest

from fhir_server.fhir.nir import is_valid_nir, make_nir, nir_key, normalize_nir

# Worked by hand:
#   1 85 05 75 115 042 -> N = 1850575115042 = 97 x 19078093969 + 49 -> key = 97 - 49 = 48
#   2 84 05 2A 321 025 -> N read as 2840519321025 = 97 x 29283704340 + 45 -> key = 52
#   2 84 05 2B 321 025 -> N read as 2840518321025 = 97 x 29283694031 + 18 -> key = 79
# The last two, and 2 84 05 88 321 025 32 / 2 55 08 14 168 025 38, are also the valid examples
# of the CNAM library's own test suite.
VALID = [
    "185057511504248",  # man born May 1985 in Paris 15e (75115)
    "284058832102532",
    "255081416802538",
    "284052A32102552",  # Corsica, 2A read as 19
    "284052B32102579",  # Corsica, 2B read as 18
]


def test_key_of_a_mainland_nir() -> None:
    assert nir_key("1850575115042") == 48


def test_key_of_corsican_nirs_reads_2a_as_19_and_2b_as_18() -> None:
    assert nir_key("284052A321025") == 52
    assert nir_key("284052B321025") == 79
    assert nir_key("284052A321025") == nir_key("2840519321025")
    assert nir_key("284052B321025") == nir_key("2840518321025")


def test_key_is_97_when_the_number_is_a_multiple_of_97() -> None:
    n13 = str(97 * (10**12 // 97 + 1))  # 13 digits, starts with 1, N mod 97 = 0
    assert nir_key(n13) == 97


@pytest.mark.parametrize("bad", ["", "185057511504", "18505751150421", "1850575A15042", None, 1850575115042])
def test_key_refuses_malformed_input(bad: object) -> None:
    with pytest.raises(ValueError):
        nir_key(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("nir", VALID)
def test_valid_nirs_are_accepted(nir: str) -> None:
    assert is_valid_nir(nir)


def test_wrong_key_is_refused() -> None:
    assert not is_valid_nir("255081416802500")
    assert not is_valid_nir("185057511504249")  # off by one


@pytest.mark.parametrize(
    "nir",
    [
        "18505751150424",  # 14 characters
        "1850575115042488",  # 16 characters
        "1850575115042",  # 13 characters: no key
        "",
    ],
)
def test_wrong_length_is_refused(nir: str) -> None:
    assert not is_valid_nir(nir)


@pytest.mark.parametrize(
    "nir",
    [
        "18505751150X248",  # a letter in the rank
        "1850575A1504248",  # a letter in the commune
        "284052C32102552",  # 2C is not a department
        "28405A232102552",  # letters misplaced
        "284052a32102552",  # lower case is not canonical
        "1 85 05 75 115 042 48",  # spaces are not canonical
    ],
)
def test_letters_and_non_canonical_forms_are_refused(nir: str) -> None:
    assert not is_valid_nir(nir)


def test_normalize_makes_user_input_canonical() -> None:
    assert normalize_nir("2 84 05 2a 321 025 52") == "284052A32102552"
    assert is_valid_nir(normalize_nir("2 84 05 2a 321 025 52"))


@pytest.mark.parametrize("sex", ["3", "0", "7", "8"])
def test_sex_digit_must_be_1_or_2(sex: str) -> None:
    n13 = sex + "850575115042"
    assert not is_valid_nir(f"{n13}{nir_key(n13):02d}")


@pytest.mark.parametrize("month", ["00", "13", "20", "42", "50", "99"])
def test_month_outside_01_12_is_refused_by_default(month: str) -> None:
    n13 = f"185{month}75115042"
    assert not is_valid_nir(f"{n13}{nir_key(n13):02d}")


@pytest.mark.parametrize("month", ["20", "42", "50", "99"])
def test_pseudo_months_are_accepted_on_request(month: str) -> None:
    n13 = f"185{month}75115042"
    assert is_valid_nir(f"{n13}{nir_key(n13):02d}", allow_unknown_month=True)


@pytest.mark.parametrize("month", ["00", "13", "43", "49"])
def test_months_outside_every_range_stay_refused(month: str) -> None:
    n13 = f"185{month}75115042"
    assert not is_valid_nir(f"{n13}{nir_key(n13):02d}", allow_unknown_month=True)


@pytest.mark.parametrize("value", [None, 185057511504248, b"185057511504248"])
def test_non_strings_are_refused_without_raising(value: object) -> None:
    assert not is_valid_nir(value)  # type: ignore[arg-type]


def test_make_nir_builds_the_worked_example() -> None:
    assert make_nir(1, 85, 5, "75", 115, 42) == "185057511504248"
    assert make_nir("1", 1985, "05", "75", "115", "042") == "185057511504248"


def test_make_nir_for_corsica() -> None:
    assert make_nir(2, 84, 5, "2A", 321, 25) == "284052A32102552"
    assert make_nir(2, 84, 5, "2b", 321, 25) == "284052B32102579"


def test_make_nir_for_an_overseas_department_uses_the_insee_code_split_2_3() -> None:
    nir = make_nir(2, 1990, 11, "971", 5, 7)  # Basse-Terre, INSEE 97105
    assert nir[:13] == "2901197105007"
    assert is_valid_nir(nir)


def test_make_nir_for_a_birth_abroad() -> None:
    nir = make_nir(1, 72, 3, "99", 350, 101)  # born in Morocco (country code 350)
    assert nir[5:10] == "99350"
    assert is_valid_nir(nir)


@pytest.mark.parametrize(
    "args",
    [
        (3, 85, 5, "75", 115, 42),
        (1, 85, 0, "75", 115, 42),
        (1, 85, 13, "75", 115, 42),
        (1, 85, 5, "7", 115, 42),
        (1, 85, 5, "2C", 115, 42),
        (1, 85, 5, "75", 1000, 42),
        (1, 85, 5, "75", 115, 0),
        (1, 85, 5, "75", 115, 1000),
        (1, 85, 5, "971", 105, 1),  # overseas commune must be < 100 with a 3-digit department
    ],
)
def test_make_nir_refuses_out_of_range_parts(args: tuple) -> None:
    with pytest.raises(ValueError):
        make_nir(*args)


def test_every_generated_nir_round_trips() -> None:
    for sex in (1, 2):
        for dept in ("01", "2A", "2B", "59", "95", "99"):
            for month in (1, 6, 12):
                nir = make_nir(sex, 2001, month, dept, 37, 999)
                assert is_valid_nir(nir), nir

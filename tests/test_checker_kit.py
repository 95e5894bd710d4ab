"""The exercise checker kit every chapter shares (shared cell "checker-kit", source in chapter 1)."""

import pytest
import torch

from booktools.library import load_chapter


@pytest.fixture(scope="module")
def kit():
    return load_chapter(1)


def test_passing_and_failing_cases_are_reported_and_summarised(kit, capsys):
    check = kit.Checker("check_demo")
    assert check.case("right", lambda: "all good") is True
    assert check.case("wrong", lambda: kit.expect(1 + 1 == 3, "1 + 1 is not 3")) is False
    assert check.case("crashes", lambda: [][1]) is False
    report = check.report()
    out = capsys.readouterr().out.splitlines()
    assert out == ["check_demo", "  PASS  right: all good", "  FAIL  wrong: AssertionError: 1 + 1 is not 3",
                   "  FAIL  crashes: IndexError: list index out of range",
                   "  1 of 3 cases passed; failed: wrong, crashes"]
    assert dict(report) == {"right": True, "wrong": False, "crashes": False}
    assert not report and report.failed == ["wrong", "crashes"]


def test_a_report_is_true_only_when_every_case_passed(kit, capsys):
    check = kit.Checker("check_demo")
    check.case("a", lambda: None)
    check.case("b", lambda x: f"x = {x}", 3)
    assert check.report(verbose=False) and not capsys.readouterr().out
    assert not kit.CheckReport()  # no case run: nothing was checked


def test_case_names_must_be_unique(kit):
    check = kit.Checker("check_demo")
    check.case("a", lambda: None)
    with pytest.raises(ValueError, match="two cases"):
        check.case("a", lambda: None)


def test_expect_close_explains_what_differs(kit):
    expected = torch.tensor([1.0, 2.0])
    assert kit.expect_close(torch.tensor([1.0, 2.0]), expected) == 0.0
    for wrong, message in [([1.0, 2.0], "should be a tensor"),
                           (torch.ones(3), r"has shape \(3,\), expected \(2,\)"),
                           (torch.tensor([1.0, 2.5]), "differs by up to 5.00e-01")]:
        with pytest.raises(AssertionError, match=message):
            kit.expect_close(wrong, expected)

"""The yardstick's floor headroom: what issue 15's floors ask of a served policy."""

import pytest

from slicetwin.sim.yardstick import floor_headroom


def test_floor_headroom_names_the_binding_floor_and_who_reaches_it():
    # the committed compare run's hetero means: no policy can meet the floors there
    h = floor_headroom({"best_fixed_hindsight": 2.710, "tuned_proportional": 2.739,
                        "planner": 2.780, "oracle": 2.805})
    assert h["binding"] == "over_best_fixed_hindsight"
    assert h["needed_for_all"] == pytest.approx(1.05 * 2.710, abs=1e-4)
    assert not h["planner_reaches"] and not h["oracle_reaches"]
    assert h["needed_over_oracle"] == pytest.approx(1.05 * 2.710 / 2.805 - 1, abs=1e-4)
    # diurnal: the tuned heuristic's +3 % binds, just above the planner
    d = floor_headroom({"best_fixed_hindsight": 2.558, "tuned_proportional": 2.764,
                        "planner": 2.846, "oracle": 2.895})
    assert d["binding"] == "over_tuned_heuristic"
    assert not d["planner_reaches"] and d["oracle_reaches"]
    # a profile with room: every floor below the planner
    e = floor_headroom({"best_fixed_hindsight": 2.0, "tuned_proportional": 2.0,
                        "planner": 2.3, "oracle": 2.4})
    assert e["planner_reaches"] and e["binding"] == "of_planner"  # 0.95 x 2.3 > 1.05 x 2.0


def test_floor_headroom_without_a_tuned_heuristic():
    h = floor_headroom({"best_fixed_hindsight": 2.0, "planner": 2.0, "oracle": 2.2})
    assert set(h["needed"]) == {"over_best_fixed_hindsight", "of_planner"}

"""Shared fixtures of the simulator tests: the tiny town, built once per session."""

from __future__ import annotations

import pytest

from geoloc_ros.sim.generate import Plan, plan, town_for_plan
from geoloc_ros.sim.scenario import Scenario, preset, validate_scenario
from geoloc_ros.sim.town import Town


@pytest.fixture(scope="session")
def tiny_scenario() -> Scenario:
    return preset("tiny")


@pytest.fixture(scope="session")
def tiny_plan(tiny_scenario: Scenario) -> Plan:
    return plan(tiny_scenario, 1)


@pytest.fixture(scope="session")
def tiny_town(tiny_plan: Plan) -> Town:
    return town_for_plan(tiny_plan)


@pytest.fixture(scope="session")
def clear_town() -> Town:
    """The tiny town without street furniture, vehicles or people: nothing hides the façades."""
    scenario = validate_scenario(
        {
            "preset": "tiny",
            "town": {"trees_per_100m": 0, "poles_per_100m": 0, "signs_per_100m": 0},
            "nuisances": {"vehicles_per_100m": 0, "pedestrians_per_100m": 0},
        },
        "clear tiny town",
    )
    return town_for_plan(plan(scenario, 1))

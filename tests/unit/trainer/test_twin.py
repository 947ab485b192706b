"""Digital twin: fitted on real simulator data, checked on held-out simulator data."""

from __future__ import annotations

import numpy as np
import pytest

from slicetwin.core.transitions import Transitions
from slicetwin.core.utility import RewardShaper
from slicetwin.twin import Twin, TwinConfig, histories
from slicetwin.twin.history import history_index, predecessor_index
from trainer.collect import collect_transitions
from trainer.twin_fidelity import multi_step_error, successor_chains

FAST = dict(ensemble=3, epochs=60, patience=10, max_fit_seconds=40.0, seed=0)


@pytest.fixture(scope="module")
def sim_data() -> tuple[Transitions, Transitions]:
    train = collect_transitions(200, n_cells=8, seed=0)  # random allocations, 1600 transitions
    test = collect_transitions(80, n_cells=4, seed=1234)  # other users, other traffic
    return train, test


@pytest.fixture(scope="module")
def fitted(sim_data) -> Twin:
    twin = Twin(TwinConfig(**FAST))
    twin.fit(sim_data[0])
    return twin


def _trace(cells: list[int], windows: list[int]) -> Transitions:
    n = len(cells)
    t = Transitions.empty()
    rng = np.random.default_rng(0)
    return Transitions(
        state=rng.random((n, 3), dtype=np.float32), action=np.arange(n, dtype=np.int64),
        reward=np.zeros(n, np.float32), utility=np.zeros(n, np.float32),
        next_state=rng.random((n, 3), dtype=np.float32), arrived=np.zeros((n, 3), np.float32),
        sla_met=np.zeros((n, 3), np.float32), se=np.zeros(n, np.float32),
        cell=np.asarray(cells, np.int64), window=np.asarray(windows, np.int64)) if n else t


def test_histories_stitch_consecutive_windows_per_cell():
    # two interleaved cells, cell 1 has a gap between windows 2 and 5
    d = _trace([0, 1, 0, 1, 0, 1], [1, 1, 2, 2, 3, 5])
    assert predecessor_index(d.cell, d.window).tolist() == [-1, -1, 0, 1, 2, -1]
    idx = history_index(d, 3)
    assert idx[4].tolist() == [0, 2, 4]  # cell 0: windows 1, 2, 3
    assert idx[5].tolist() == [5, 5, 5]  # after the gap: edge-padded with itself
    assert idx[3].tolist() == [1, 1, 3]  # oldest known pair repeated
    s, ps, pa = histories(d, np.array([4]), 3)
    assert np.array_equal(ps[0], d.state[[0, 2]]) and pa[0].tolist() == [0, 2]
    assert np.array_equal(s[0], d.state[4])
    assert successor_chains(d, 3).tolist() == [[0, 2, 4]]


def test_fitted_twin_beats_persistence_on_held_out_data(fitted, sim_data):
    _, test = sim_data
    m = fitted.evaluate(test)
    assert m["next_state_rmse"] < 0.95 * m["persistence_rmse"], m
    ms = multi_step_error(fitted, test, horizon=3)
    assert all(t < p for t, p in zip(ms["twin_rmse"], ms["persistence_rmse"], strict=True)), ms
    # the KPI head explains a good part of the held-out SE and utility (a constant guess would
    # score rmse = std)
    assert m["se_rmse"] < 0.85 * float(np.std(test.se)), m
    assert m["utility_rmse"] < 0.9 * float(np.std(test.utility)), m
    assert 0.0 <= fitted.metrics["calibration_error"] < 0.2


def test_ensemble_uncertainty_is_larger_off_distribution(fitted, sim_data):
    _, test = sim_data
    rows = np.arange(0, len(test), 3)
    s, ps, pa = histories(test, rows, fitted.config.history)
    actions = test.action[rows]
    fitted.reset(s, ps, pa, seed=0)
    on = fitted.step(actions).uncertainty
    far = np.array([6.0, 6.0, 6.0], np.float32)  # 6x the typical per-slice load, never seen
    fitted.reset(s * far, ps * far, pa, seed=0)
    off = fitted.step(actions).uncertainty
    assert np.median(off) > 2.0 * np.median(on), (np.median(on), np.median(off))


def test_reward_is_recomputed_from_predicted_kpis_with_current_shaper(fitted, sim_data):
    _, test = sim_data
    s, ps, pa = histories(test, np.arange(64), fitted.config.history)
    acts = test.action[:64]
    seq_s = np.concatenate([ps, s[:, None]], axis=1)
    seq_a = np.concatenate([pa, acts[:, None]], axis=1)
    low = RewardShaper(gamma_min=0.0, gamma_max=2.0, sigma=0.0)
    high = RewardShaper(gamma_min=5.0, gamma_max=5.0, sigma=0.0)
    fitted.shaper = low
    a = fitted.predict(seq_s, seq_a, t=0, seed=3)
    fitted.shaper = high
    b = fitted.predict(seq_s, seq_a, t=0, seed=3)
    fitted.shaper = RewardShaper()
    np.testing.assert_array_equal(a["utility"], b["utility"])  # same KPIs, same utility
    np.testing.assert_allclose(a["reward"], low.reward(a["utility"], 0), rtol=1e-6)
    np.testing.assert_allclose(b["reward"], high.reward(b["utility"], 0), rtol=1e-6)
    assert (a["reward"] > 0).mean() > 0.5 and (b["reward"] == 0).all()
    # utility follows the KPI head: alpha * SE + sum SSR
    np.testing.assert_allclose(a["utility"], 0.01 * a["se"] + a["ssr"].sum(1), rtol=1e-5)
    # a rising threshold (sigma > 0) changes the reward with t for the same prediction
    rising = RewardShaper(gamma_min=0.0, gamma_max=5.0, sigma=1.0)
    fitted.shaper = rising
    late = fitted.predict(seq_s, seq_a, t=4, seed=3)
    fitted.shaper = RewardShaper()
    np.testing.assert_allclose(late["reward"], rising.reward(late["utility"], 4), rtol=1e-6)
    assert late["reward"].sum() < a["reward"].sum()


def test_save_load_round_trip(fitted, sim_data, tmp_path):
    _, test = sim_data
    path = tmp_path / "twin.pt"
    fitted.save(path)
    back = Twin.load(path)
    assert back.config == fitted.config and back.metrics == fitted.metrics
    s, ps, pa = histories(test, np.arange(32), fitted.config.history)
    for tw in (fitted, back):
        tw.reset(s, ps, pa, seed=11)
    for _ in range(3):
        a, b = fitted.step(test.action[:32]), back.step(test.action[:32])
        np.testing.assert_array_equal(a.next_state, b.next_state)
        np.testing.assert_array_equal(a.reward, b.reward)
        np.testing.assert_array_equal(a.uncertainty, b.uncertainty)
    with pytest.raises(ValueError, match="not a"):
        Twin.from_bytes(b"definitely not a model")


def test_rollouts_are_seeded_and_generative(fitted, sim_data):
    _, test = sim_data
    s = test.state[:16]
    acts = test.action[:16]

    def roll(seed, sample=None):
        fitted.reset(s, seed=seed, sample=sample)
        return np.stack([fitted.step(acts).next_state for _ in range(3)])

    np.testing.assert_array_equal(roll(1), roll(1))
    assert not np.allclose(roll(1), roll(2))  # sampling: different seeds, different draws
    np.testing.assert_array_equal(roll(1, sample=False), roll(2, sample=False))  # mean mode
    out = fitted.step(acts)
    assert out.next_state.shape == (16, 3) and out.reward.shape == (16,)
    assert set(out.kpis) >= {"arrived", "sla_met", "se", "ssr"}
    assert (out.kpis["sla_met"] <= out.kpis["arrived"] + 1e-4).all()


def test_predict_rejects_bad_input(fitted):
    ok_s = np.ones((2, 4, 3), np.float32)
    ok_a = np.zeros((2, 4), np.int64)
    with pytest.raises(ValueError, match="shape"):
        fitted.predict(np.ones((2, 4, 2), np.float32), ok_a)
    with pytest.raises(ValueError, match="out of range"):
        fitted.predict(ok_s, np.full((2, 4), fitted.n_actions))
    with pytest.raises(ValueError, match="NaN"):
        fitted.predict(np.full((2, 4, 3), np.nan, np.float32), ok_a)
    with pytest.raises(ValueError, match="empty"):
        fitted.predict(np.ones((2, 0, 3), np.float32), np.zeros((2, 0), np.int64))
    with pytest.raises(RuntimeError):
        Twin(TwinConfig(ensemble=1)).step(np.zeros(2, np.int64))


@pytest.mark.slow
def test_policy_ranking_agrees_with_simulator(fitted, sim_data):
    from trainer.twin_fidelity import policy_ranking

    r = policy_ranking(fitted, sim_data[1], horizon=20, sim_steps=60)
    assert r["kendall_tau"] > 0.4, r


def test_branch_tries_k_actions_without_advancing(fitted, sim_data):
    _, test = sim_data
    s = test.state[:6]
    acts = np.stack([test.action[:6], (test.action[:6] + 977) % fitted.n_actions,
                     np.full(6, 4850)], axis=1)  # (6, 3) candidate actions per state
    fitted.reset(s, seed=3, sample=False)
    br = fitted.branch(acts)
    assert br.reward.shape == (18,) and br.next_state.shape == (18, 3)
    # row i*K + k equals a plain step of rollout i under action k (ensemble mean: deterministic)
    for k in range(3):
        fitted.reset(s, seed=3, sample=False)
        one = fitted.step(acts[:, k])
        np.testing.assert_allclose(br.utility[k::3], one.utility, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(br.next_state[k::3], one.next_state, rtol=1e-5, atol=1e-6)
    # the allocations differ, so their predicted utilities do (the branch is not one row copied)
    assert not np.allclose(br.utility[0::3], br.utility[2::3])
    # branching did not move the rollouts: a step afterwards starts from the reset states
    fitted.reset(s, seed=3, sample=False)
    fitted.branch(acts)
    after = fitted.step(acts[:, 0])
    np.testing.assert_allclose(after.utility, br.utility[0::3], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        fitted.branch(acts[:, 0])

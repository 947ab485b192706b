"""Trainer worker: durable ingestion (restart, crash windows, stream trim), gate, cycle, resume.

Real redis-server (``redis_url`` fixture), real files, real simulator data; no mocks.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import redis
import torch

from slicetwin.core.transition_wire import encode
from slicetwin.ops.simfeed import sim_transitions, xadd_all
from tests.support.worker import STREAM, _constant_policy_onnx, fast_settings
from trainer.worker.store import DatasetStore


def ingest_only(tmp_path, url, name="trainer-1"):
    """A worker that never trains (registry untouched): just the ingestion path."""
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker

    return TrainerWorker(fast_settings(tmp_path, url, consumer_name=name), registry=MemoryRegistry())


# ---------------------------------------------------------------------------------- store
def test_store_recovers_from_torn_index_and_orphan_chunk(tmp_path):
    from slicetwin.core.transition_wire import decode, to_transitions

    rows = [decode(encode(t)) for t in sim_transitions(cells=2, windows=10)]
    data = to_transitions(rows)
    st = DatasetStore(tmp_path)
    st.append(data[:10], [f"1-{i}" for i in range(10)])
    st.append(data[10:], [f"2-{i}" for i in range(10)])
    # a crash mid-commit: a half-written index line and a chunk no index line names
    with open(tmp_path / "index.jsonl", "ab") as fh:
        fh.write(b'{"chunk": "chunk-00000003.npz", "n"')
    (tmp_path / "chunk-00000003.npz").write_bytes(b"partial")
    st2 = DatasetStore(tmp_path)
    assert len(st2) == 20 and st2.last_id == "2-9"
    assert not (tmp_path / "chunk-00000003.npz").exists()
    got, ids = st2.load()
    np.testing.assert_array_equal(got.action, data.action)
    assert ids.tolist() == [f"1-{i}" for i in range(10)] + [f"2-{i}" for i in range(10)]
    assert st2.is_persisted("2-3") and not st2.is_persisted("2-10")
    st2.append(data[:1], ["3-0"])  # appends after recovery land on a clean line
    assert len(DatasetStore(tmp_path)) == 21


# ---------------------------------------------------------------------------------- restart
def test_restart_in_every_crash_window_loses_and_duplicates_nothing(tmp_path, redis_url):
    from slicetwin.core.transition_wire import to_transitions

    n = xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=150, seed=3))
    w = ingest_only(tmp_path, redis_url)
    assert w.ingest_once() == 600  # read_count 2000 > 600: one batch, persisted and acked
    n += xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=100, seed=4, cell_prefix="b"))
    # crash window 1: delivered (pending) but never persisted
    lost = w.source.poll(150, 0)
    assert len(lost.ids) == 150
    # crash window 2: persisted but the process died before XACK
    p = w.source.poll(100, 0)
    w.store.append(to_transitions(p.entries), p.ids)
    r = redis.Redis.from_url(redis_url)
    assert r.xpending(STREAM, "trainer")["pending"] == 250
    w.close()  # the "crash": nothing more from this worker

    w2 = ingest_only(tmp_path, redis_url)  # same consumer name, same data dir
    w2.ingest()
    assert len(w2.store) == n == 1000
    _, ids = w2.store.load()
    assert len(set(ids.tolist())) == n  # exactly once in the dataset
    assert w2.skipped_duplicates == 100  # the persisted-not-acked batch was recognised
    assert r.xpending(STREAM, "trainer")["pending"] == 0
    w2.close()


def test_trainer_process_killed_repeatedly_loses_no_transition(tmp_path, redis_url, cli_env):
    """kill -9 the real ``slicetwin trainer`` twice while a producer writes; count at the end."""
    env = dict(cli_env, SLICETWIN_REDIS_URL=redis_url, SLICETWIN_DATA_DIR=str(tmp_path / "tr"),
               SLICETWIN_MIN_TRANSITIONS=str(10**9), SLICETWIN_READ_COUNT="50",
               SLICETWIN_READ_BLOCK_MS="20")
    produced = 0
    feed = sim_transitions(cells=4, windows=400, seed=5)
    cmd = [sys.executable, "-m", "slicetwin.cli.main", "trainer", "--log-level", "warning"]
    r = redis.Redis.from_url(redis_url)

    def group_info() -> dict | None:
        try:
            groups = r.xinfo_groups(STREAM)
        except redis.ResponseError:  # no stream yet
            return None
        return groups[0] if groups else None

    def start() -> subprocess.Popen:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 90
        seen = (group_info() or {}).get("entries-read")
        while time.time() < deadline:  # wait until this process is reading
            g = group_info()
            if g is not None and (produced == 0 or g.get("entries-read") != seen
                                  or g.get("lag") == 0):
                return proc
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            time.sleep(0.1)
        raise AssertionError("trainer did not start reading")

    for round_ in range(2):
        produced += xadd_all(redis_url, STREAM, [next(feed) for _ in range(40)])
        proc = start()
        for _ in range(9):  # keep producing while it ingests, then kill -9 mid-stream
            produced += xadd_all(redis_url, STREAM, [next(feed) for _ in range(40)])
            time.sleep(0.03 * (round_ + 1))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    # a last, graceful run drains everything
    proc = subprocess.Popen(cmd[:-1] + ["info"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # its signal handlers are installed once it logs this
        if "trainer worker running" in line:
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()
    deadline = time.time() + 60
    while time.time() < deadline:
        g = group_info()
        if g["pending"] == 0 and g.get("lag") == 0:
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    st = DatasetStore(tmp_path / "tr" / "dataset")
    _, ids = st.load()
    assert produced == 800
    assert len(st) == produced, f"persisted {len(st)} of {produced}"
    assert len(set(ids.tolist())) == produced
    assert r.xpending(STREAM, "trainer")["pending"] == 0


# ---------------------------------------------------------------------------------- trim
def test_stream_trim_loses_nothing_once_persisted(tmp_path, redis_url):
    r = redis.Redis.from_url(redis_url)
    w = ingest_only(tmp_path, redis_url)
    feed = sim_transitions(cells=4, windows=400, seed=6)
    produced = 0
    # a capped stream (MAXLEN ~ 300) with a trainer that keeps up: every entry is persisted
    # before the cap can trim it
    for _ in range(6):
        produced += xadd_all(redis_url, STREAM, [next(feed) for _ in range(200)], maxlen=300)
        w.ingest()
    assert r.xlen(STREAM) < produced
    # an aggressive trim of everything after persisting
    r.xtrim(STREAM, maxlen=0)
    assert r.xlen(STREAM) == 0
    produced += xadd_all(redis_url, STREAM, [next(feed) for _ in range(200)], maxlen=300)
    w.close()
    w2 = ingest_only(tmp_path, redis_url)  # and a restart across the trim
    w2.ingest()
    _, ids = w2.store.load()
    assert len(w2.store) == produced == 1400
    assert len(set(ids.tolist())) == produced
    assert w2.source.trimmed_pending == 0
    w2.close()


def test_pending_entries_trimmed_before_persisting_are_counted(tmp_path, redis_url):
    """The documented bound: what the cap trims before the trainer persisted it is lost, and
    counted (never silently)."""
    r = redis.Redis.from_url(redis_url)
    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=50, seed=7))
    w = ingest_only(tmp_path, redis_url)
    w.source.poll(60, 0)  # delivered, then "crash" before persisting
    w.close()
    r.xtrim(STREAM, maxlen=0)
    w2 = ingest_only(tmp_path, redis_url)
    w2.ingest()
    assert w2.source.trimmed_pending == 60
    assert r.xpending(STREAM, "trainer")["pending"] == 0
    w2.close()


# ---------------------------------------------------------------------------------- gate
def _codec():
    from slicetwin.core.actions import ActionCodec

    return ActionCodec()


@pytest.fixture(scope="module")
def fitted():
    """A small twin fitted on explored simulator data (shared by the gate tests)."""
    from slicetwin.core.transition_wire import decode, to_transitions
    from trainer.worker import WorkerSettings
    from trainer.worker.learn import fit_twin
    from trainer.worker.store import holdout_mask

    data = to_transitions(decode(encode(t)) for t in sim_transitions(cells=4, windows=200, seed=8))
    ids = np.asarray([f"1-{i}" for i in range(len(data))])
    held = holdout_mask(ids, 0.15)
    s = WorkerSettings(twin_epochs=20, twin_fit_seconds=120.0)
    twin, _ = fit_twin(data[~held], s, seed=0)
    return twin, data, np.flatnonzero(held)


def test_gate_refuses_a_deliberately_worse_candidate(fitted):
    from trainer.worker.gate import gate, gate_seeds, onnx_policy_fn

    twin, data, held = fitted
    good = onnx_policy_fn(_constant_policy_onnx((1, 85, 14), "good"))  # video-heavy: ~2.95
    bad = onnx_policy_fn(_constant_policy_onnx((97, 1, 2), "bad"))  # starves video: ~1.9
    kw = dict(twin=twin, data=data, held_rows=held, margin=0.01, horizon=3, rollouts=128,
              seed=1, sim={"cells": 4, "windows": 20, "seeds": gate_seeds(1, 1)})
    refused = gate(bad, good, **kw)
    assert not refused.passed
    assert refused.candidate["sim_utility"] < refused.current["sim_utility"] - 0.3
    assert refused.candidate["twin_utility"] < refused.current["twin_utility"]
    assert "worse than current" in refused.reason
    accepted = gate(good, bad, **kw)
    assert accepted.passed
    same = gate(good, good, **kw)  # identical policies, same starts and seeds: equal figures
    assert same.passed and same.candidate == same.current


def test_worker_publishes_refused_candidate_without_promoting(tmp_path, redis_url):
    from slicetwin.registry.store import RedisRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.gate import gate_seeds, sim_utility

    xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=60, seed=9))
    # the policy in service: the best fixed allocation on exactly the sim gate's held-out
    # traffic (cycle 1's tuning-range seeds), which a barely trained candidate cannot match
    seeds = gate_seeds(1, 2)
    grid = [(a, b, 100 - a - b) for a in range(1, 40, 9) for b in range(50, 99 - a, 9)]
    best = max(grid, key=lambda u: sim_utility(
        lambda st, u=u: np.full(len(st), _codec().encode(np.asarray(u))), 4, 15, seeds))
    reg = RedisRegistry(redis_url)
    reg.publish("policy", _constant_policy_onnx(best, "strong"), version="strong", promote=True)
    s = fast_settings(tmp_path, redis_url, sim_gate=True, sim_gate_cells=4, sim_gate_windows=15,
                      sim_gate_seeds=2,
                      twin_steps=10, finetune_steps=0, distill_rounds=5)
    w = TrainerWorker(s, registry=reg)
    res = w.run_cycle()
    assert res.policy_version and not res.promoted
    assert reg.current("policy") == "strong"
    # stored for inspection, but without a signed promotion record: no service can serve it
    assert reg.authorised("policy").version == "strong"
    assert not any(res.policy_version in env for env in reg.promotions("policy"))
    rec = reg.show("policy", res.policy_version)
    assert rec.metrics["gate"]["passed"] is False
    assert rec.metrics["gate"]["current_version"] == "strong"
    assert rec.metrics["gate"]["candidate"]["sim_utility"] < rec.metrics["gate"]["current"]["sim_utility"]
    assert rec.metrics["gate"]["decided_on"] == ["sim_utility"]
    assert rec.metrics["gate"]["sim_seeds"] == seeds
    w.close()


# ---------------------------------------------------------------------------------- cycle
def test_cycle_publishes_twin_and_policy_then_resumes(tmp_path, redis_url):
    from slicetwin.registry.store import RedisRegistry
    from slicetwin.runtime.onnx_policy import OnnxPolicy
    from slicetwin.twin import Twin
    from trainer.worker import TrainerWorker

    xadd_all(redis_url, STREAM, sim_transitions(cells=4, windows=80, seed=10))
    reg = RedisRegistry(redis_url)
    w = TrainerWorker(fast_settings(tmp_path, redis_url, gate_margin=10.0), registry=reg)
    res = w.run_cycle()
    d = json.loads(json.dumps(res.to_dict(), default=float))
    assert d["dataset"] == 320 and d["train_rows"] + d["heldout_rows"] == 320
    assert res.twin_published and reg.current("twin") == res.twin_version
    assert res.promoted and reg.current("policy") == res.policy_version  # margin 10: passes
    rec, blob = reg.fetch("policy")
    pol = OnnxPolicy(blob)  # the controller's loader accepts it
    assert pol.act_batch(np.ones((4, 3), np.float32)).shape == (4,)
    # no simulator profile: the held-out real transitions decide; the twin is reported only
    assert set(rec.metrics["gate"]["candidate"]) == {"twin_utility", "real_heldout_utility"}
    assert rec.metrics["gate"]["decided_on"] == ["real_heldout_utility"]
    _, tblob = reg.fetch("twin")
    assert Twin.from_bytes(tblob).fitted
    w.close()
    # restart: the checkpoint brings back the cycle count, agent 1 and the best twin
    w2 = TrainerWorker(fast_settings(tmp_path, redis_url), registry=reg)
    w2.prepare()
    assert w2.cycle == 1 and w2.best_twin_version == res.twin_version
    for k, net in w.agent1.networks().items():
        for a, b in zip(net.state_dict().values(), w2.agent1.networks()[k].state_dict().values(),
                        strict=True):
            assert np.array_equal(a.numpy(), b.numpy())
    assert not w2.ready()  # no new rows since the checkpointed cycle
    w2.close()


def test_worker_survives_redis_down(tmp_path, caplog):
    from slicetwin.ops.procs import free_port
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker

    stop = threading.Event()
    s = fast_settings(tmp_path, f"redis://127.0.0.1:{free_port()}/0", backoff_initial_s=0.05,
                      backoff_max_s=0.2)
    w = TrainerWorker(s, registry=MemoryRegistry(), stop_event=stop)
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    time.sleep(1.5)
    assert th.is_alive()  # still retrying, not crashed
    stop.set()
    th.join(15)
    assert not th.is_alive()
    assert any("ingest failed" in r.getMessage() for r in caplog.records)


def test_embedded_worker_reads_a_memory_sink_and_promotes_in_memory(tmp_path):
    """The demo's path: controller MemorySink -> MemorySinkSource -> worker -> MemoryRegistry."""
    from controller.sinks import MemorySink
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.source import MemorySinkSource

    sink = MemorySink()
    for t in sim_transitions(cells=4, windows=40, seed=11):
        sink.put(t)
    sink.flush()
    reg = MemoryRegistry()
    seen = []
    reg.watch("policy", seen.append)
    w = TrainerWorker(fast_settings(tmp_path, gate_margin=10.0), registry=reg,
                      source=MemorySinkSource(sink))
    res = w.run_cycle()
    assert res.dataset == 160 and res.promoted
    assert reg.current("policy") == res.policy_version and seen[-1] == res.policy_version
    for t in sim_transitions(cells=4, windows=10, seed=12):
        sink.put(t)
    sink.flush()
    assert w.ingest() == 40 and len(w.store) == 200  # only the new ones
    w.close()


def test_sim_profile_setting_and_sim_gate_profile(monkeypatch):
    """``sim_profile`` (env SLICETWIN_SIM_PROFILE, default unset: real gNBs) picks the sim gate's
    traffic; a bad one is a settings error naming the choices."""
    from pydantic import ValidationError

    from slicetwin.platform.settings_errors import settings_error
    from trainer.worker.gate import gate, sim_utility
    from trainer.worker.settings import WorkerSettings

    monkeypatch.delenv("SLICETWIN_SIM_PROFILE", raising=False)
    assert WorkerSettings().sim_profile is None and not WorkerSettings().sim_gate_on
    monkeypatch.setenv("SLICETWIN_SIM_PROFILE", "paper:5,diurnal")
    assert WorkerSettings().sim_profile == "paper:5,diurnal" and WorkerSettings().sim_gate_on
    monkeypatch.setenv("SLICETWIN_SIM_PROFILE", "rush-hour")
    with pytest.raises(ValidationError) as e:
        WorkerSettings()
    msg = settings_error(e.value)
    assert "SLICETWIN_SIM_PROFILE='rush-hour'" in msg and "diurnal, flash-crowd, hetero" in msg

    a = int(_codec().encode(np.array([20, 60, 20])))
    b = int(_codec().encode(np.array([60, 20, 20])))
    cand, cur = (lambda st: np.full(len(st), a)), (lambda st: np.full(len(st), b))
    g = gate(cand, cur, twin=None, data=None, held_rows=np.array([], np.int64), margin=0.0,
             seed=2, sim={"cells": 2, "windows": 4, "profile": "diurnal", "seeds": [1002]})
    assert g.sim_profile == "diurnal" and g.sim_seeds == [1002]
    assert g.candidate["sim_utility"] == sim_utility(cand, 2, 4, [1002], profile="diurnal")
    assert g.current["sim_utility"] == sim_utility(cur, 2, 4, [1002], profile="diurnal")
    assert g.candidate["sim_utility"] != sim_utility(cand, 2, 4, [1002])  # paper: other traffic


def test_worker_sim_gate_runs_on_the_settings_profile(tmp_path):
    """The worker hands ``sim_profile`` to the sim gate (the demo sets it to its --profile)."""
    from controller.sinks import MemorySink
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.source import MemorySinkSource

    sink = MemorySink()
    for t in sim_transitions(cells=4, windows=30, seed=19, profile="flash-crowd"):
        sink.put(t)
    sink.flush()
    reg = MemoryRegistry()
    s = fast_settings(tmp_path, sim_gate_cells=2, sim_gate_windows=4,
                      sim_profile="flash-crowd", twin_steps=10, finetune_steps=0,
                      distill_rounds=5, checkpoint=False)
    w = TrainerWorker(s, registry=reg, source=MemorySinkSource(sink))
    res = w.run_cycle()
    assert res.policy_version and res.gate["sim_profile"] == "flash-crowd"
    assert "sim_utility" in res.gate["candidate"] and "sim_utility" in res.gate["current"]
    assert reg.show("policy", res.policy_version).metrics["gate"]["sim_profile"] == "flash-crowd"
    assert res.gate["decided_on"] == ["sim_utility"]  # on by default with a known profile
    assert all(1000 <= x < 2000 for x in res.gate["sim_seeds"])  # tuning range: held out
    w.close()


def _labels_of(s, seed):
    from trainer.worker.learn import PlannerLabels

    pool = PlannerLabels(s)
    pool.add(s, seed)
    return pool.states[0]


def test_planner_teacher_grows_its_labels_and_its_candidate_beats_the_heuristic(tmp_path):
    """``teacher=planner``: each cycle labels one more training seed with the simulator's
    planner and fits the student to all of them; the gate judges the candidate as usual, and on
    the profile it plans with it beats the demand-proportional cold start."""
    from pydantic import ValidationError

    from controller.sinks import MemorySink
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.source import MemorySinkSource

    with pytest.raises(ValidationError, match="teacher=planner needs sim_profile"):
        fast_settings(tmp_path, teacher="planner")
    sink = MemorySink()
    for t in sim_transitions(cells=4, windows=30, seed=19, profile="diurnal"):
        sink.put(t)
    sink.flush()
    reg = MemoryRegistry()
    s = fast_settings(tmp_path, sim_profile="diurnal", teacher="planner", plan_cells=8, plan_windows=60,
                      plan_steps=1500, gate_margin=0.0, checkpoint=False,
                      cold_start="proportional")
    w = TrainerWorker(s, registry=reg, source=MemorySinkSource(sink))
    first = w.run_cycle()
    assert first.training["distill"]["teacher"] == "planner"
    assert first.training["distill"]["labels"] == 8 * 60
    assert "agent2" not in first.training  # no agent trained for this candidate
    cand, cur = first.gate["candidate"]["sim_utility"], first.gate["current"]["sim_utility"]
    assert first.gate["current_version"].startswith("heuristic-proportional")
    assert first.promoted and cand > cur + 0.02, (first.gate["reason"], first.gate.get("paired"))
    for t in sim_transitions(cells=4, windows=2, seed=20, profile="diurnal"):
        sink.put(t)
    sink.flush()
    second = w.run_cycle()
    assert second.training["distill"]["labels"] == 2 * 8 * 60
    w.close()
    # the pool keeps the newest plan_max_labels, dropping whole cycles
    from trainer.worker.learn import PlannerLabels

    small = fast_settings(tmp_path, sim_profile="diurnal", teacher="planner", plan_cells=2,
                          plan_windows=5, plan_max_labels=25)
    pool = PlannerLabels(small)
    for seed in range(4):
        pool.add(small, seed)
    assert len(pool) == 20 and len(pool.states) == 2
    np.testing.assert_array_equal(pool.states[-1], _labels_of(small, 3))  # the newest cycle


def test_twin_teacher_plans_with_the_learned_twin_on_live_data_only(tmp_path):
    """``teacher=twin``: no simulator and no agent; the cycle's twin rates every split at live
    states and the student fits those ratings, continuing from the last cycle's. The gate judges
    the candidate on held-out simulator cells of the profile the live data came from."""
    from controller.sinks import MemorySink
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker
    from trainer.worker.source import MemorySinkSource

    sink = MemorySink()
    for t in sim_transitions(cells=4, windows=100, seed=21, profile="diurnal"):
        sink.put(t)
    sink.flush()
    s = fast_settings(tmp_path, sim_profile="diurnal", teacher="twin", twin_plan_rows=48,
                      plan_steps=1500, twin_epochs=40, twin_fit_seconds=20.0, gate_margin=0.0,
                      checkpoint=False, cold_start="static", static_split="1,1,1")
    w = TrainerWorker(s, registry=MemoryRegistry(), source=MemorySinkSource(sink))
    first = w.run_cycle()
    fit = first.training["distill"]
    assert fit["teacher"] == "twin" and fit["labels"] == 48
    assert "agent2" not in first.training and "planner" not in first.seconds
    cand, cur = first.gate["candidate"]["sim_utility"], first.gate["current"]["sim_utility"]
    assert first.gate["current_version"].startswith("heuristic-static")
    # well above an equal split: a wrong rating, projection or fold would not be
    assert first.promoted and cand > cur + 0.1, (first.gate["reason"], cand, cur)
    kept = w.twin_student
    for t in sim_transitions(cells=4, windows=2, seed=22, profile="diurnal"):
        sink.put(t)
    sink.flush()
    second = w.run_cycle()
    assert second.training["distill"]["teacher"] == "twin"
    assert w.twin_student is not kept  # a new fit, continued from the last one
    assert torch.equal(w.twin_student.norm.mean, kept.norm.mean)
    w.close()


def test_undecodable_entry_is_acknowledged_and_counted(tmp_path, redis_url):
    r = redis.Redis.from_url(redis_url)
    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=5, seed=13))
    r.xadd(STREAM, {"garbage": "1"})
    r.xadd(STREAM, {"t": "[1, 2]"})
    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=5, seed=14, cell_prefix="z"))
    w = ingest_only(tmp_path, redis_url)
    assert w.ingest() == 20
    assert w.source.bad_entries == 2
    assert r.xpending(STREAM, "trainer")["pending"] == 0
    w.close()


def test_drain_continues_past_a_batch_of_duplicates(tmp_path, redis_url):
    from slicetwin.core.transition_wire import to_transitions

    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=20, seed=15))
    w = ingest_only(tmp_path, redis_url)
    p = w.source.poll(40, 0)
    w.store.append(to_transitions(p.entries), p.ids)  # persisted, then "crash" before XACK
    w.close()
    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=20, seed=16, cell_prefix="n"))
    w2 = ingest_only(tmp_path, redis_url)
    assert w2.ingest() == 40  # one call: the all-duplicate pending batch, then the new entries
    assert len(w2.store) == 80 and w2.skipped_duplicates == 40
    w2.close()


def test_ingestion_resumes_after_a_redis_restart(tmp_path, redis_server, redis_url, caplog):
    """Redis goes away mid-run (and comes back empty: no persistence): the worker logs, backs
    off, re-creates its group and persists what arrives afterwards; nothing crashes."""
    from slicetwin.registry.store import MemoryRegistry
    from trainer.worker import TrainerWorker

    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=25, seed=17))
    stop = threading.Event()
    s = fast_settings(tmp_path, redis_url, min_transitions=10**9, backoff_initial_s=0.05,
                      backoff_max_s=0.3)
    w = TrainerWorker(s, registry=MemoryRegistry(), stop_event=stop)
    w.start_ingest()

    def wait_rows(n: int) -> None:
        deadline = time.time() + 20
        while len(w.store) < n and time.time() < deadline:
            time.sleep(0.05)

    wait_rows(50)
    assert len(w.store) == 50
    redis_server.stop()
    time.sleep(1.0)
    redis_server.start()
    xadd_all(redis_url, STREAM, sim_transitions(cells=2, windows=25, seed=18, cell_prefix="r"))
    wait_rows(100)
    stop.set()
    w.close()
    assert len(w.store) == 100
    assert any("ingest failed" in r.getMessage() for r in caplog.records)

"""The preference-conditioned policy, plan-level GRPO (resume, gate, store) and the search peers."""

import json
import signal
import subprocess
import sys
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from hipp_core import validation
from hipp_core.api import planner, policy_checkpoint_path
from hipp_core.blueprint import LayerPlan, blueprint_from_layers
from hipp_core.data.source import DataSource
from hipp_core.errors import HippError
from hipp_core.evaluation.backends import InProcessEvaluator
from hipp_core.grpo import (
    GRPOConfig,
    GRPOTrainer,
    _group_advantages,
    policy_id_for,
    reward,
    stability,
)
from hipp_core.policy import STATE_FEATURES, PlanSample, PrunePolicy, layer_state
from hipp_core.search import hypervolume, nsga2_search, random_search
from plan_store import PlanStore
from tests.conftest import invoke

LIMIT = 4  # dev questions per set behind each reward: the tiny models are random, only the mechanics are tested
SHAPESWORLD = DataSource(shapesworld=True)  # the tiny checkpoints are local ones: ShapesWorld by name


@pytest.fixture(scope="module")
def plans(tiny_llava, tmp_path_factory):
    """A store of its own: other test files train policies for the same tiny model in the session's store."""
    return planner(str(tiny_llava), PlanStore(tmp_path_factory.mktemp("untrained") / "plans.duckdb"), data=SHAPESWORLD)


def _state(plans) -> torch.Tensor:
    return torch.from_numpy(layer_state(plans.features, plans.shapes))


def test_layer_state_is_normalized_across_layers(plans):
    state = layer_state(plans.features, plans.shapes)
    assert state.shape == (len(plans.shapes), len(STATE_FEATURES))
    assert np.allclose(state[:, :-1].mean(0), 0, atol=1e-5)  # z-scored (or all zero when constant)
    assert state[0, -1] == 0 and state[-1, -1] == 1  # depth


def test_untrained_policy_starts_at_uniform_blocks_and_a_budget_rising_with_compression(plans):
    policy = PrunePolicy(len(STATE_FEATURES))
    c = policy.config
    w = torch.tensor([[0.2, 0.7, 0.1], [0.25, 0.25, 0.5], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    acted = policy.act(_state(plans), w, deterministic=True)
    budgets = [p.budget for p in acted]
    assert all(np.allclose(p.alpha, 1 / (2 * len(plans.shapes))) for p in acted)
    assert budgets[1] == pytest.approx((c.budget_min + c.budget_max) / 2, abs=1e-6)  # Beta(4, 4) at w_c = ½
    # the mode of Beta(1 + 6m, 1 + 6(1 − m)) is m = 0.05 + 0.9 w_c: linear in the compression weight
    expected = [c.budget_min + (c.budget_max - c.budget_min) * (0.05 + 0.9 * float(wc)) for wc in w[:, 2]]
    assert budgets == pytest.approx(expected, abs=1e-5)
    blind = PrunePolicy(len(STATE_FEATURES), replace(c, compression_prior=False))
    assert {round(p.budget, 6) for p in blind.act(_state(plans), w, deterministic=True)} == {
        round((c.budget_min + c.budget_max) / 2, 6)
    }
    fixed = policy.act(_state(plans), w[:1], torch.tensor([0.3]), deterministic=True)[0]
    assert fixed.overridden and fixed.budget == pytest.approx(0.3)


def test_the_deterministic_budget_is_the_most_likely_one_and_reaches_the_end_of_the_range(plans):
    """A Beta skewed against the top of the range keeps its mean inside it; the plan on show takes the mode, so a
    policy that learned "as much compression as allowed" shows it."""
    policy = PrunePolicy(len(STATE_FEATURES))
    c, state = policy.config, _state(plans)
    torch.manual_seed(0)
    with torch.no_grad():
        policy.budget[-1].weight.normal_(0, 0.5)
    w = torch.tensor(np.random.default_rng(0).dirichlet(np.ones(3), size=8), dtype=torch.float32)
    dist = policy.budget_dist(state, w)
    acted = policy.act(state, w, deterministic=True)
    grid = torch.linspace(1e-3, 1 - 1e-3, 999)[:, None]
    best = grid[dist.log_prob(grid).argmax(0), 0]  # the densest point of each row's Beta, by brute force
    assert [policy.to_unit(torch.tensor(p.budget)).item() for p in acted] == pytest.approx(best.tolist(), abs=2e-3)
    with torch.no_grad():  # a head that learned to push the budget up: Beta(≈30, ≈1)
        policy.budget[-1].weight.zero_()
        policy.budget[-1].bias.copy_(torch.tensor([30.0, -30.0]))
    top = policy.act(state, w[:1], deterministic=True)[0].budget
    mean = policy.from_unit(policy.budget_dist(state, w[:1]).mean).item()
    assert top == pytest.approx(c.budget_max, abs=1e-3) and mean < c.budget_max - 0.015


def test_attention_share_is_explored_and_learnable(plans):
    """The split between attention and MLP blocks has its own Beta: sampled plans spread over it (a single Dirichlet
    over the 2L blocks kept it at 0.5 ± 0.04), and a policy-gradient step on a reward for sparing attention moves the
    deterministic plan's share down."""
    policy = PrunePolicy(len(STATE_FEATURES))
    L = len(plans.shapes)
    state, w = _state(plans), torch.tensor([[0.5, 0.5, 0.0]] * 256)
    budget = torch.full((256,), 0.3)
    share = np.array([p.alpha[:L].sum() for p in policy.act(state, w, budget, seed=0)])
    assert 0.18 < share.std() < 0.27  # Beta(2, 2): std 0.224
    opt = torch.optim.Adam(policy.parameters(), lr=0.05)
    for step in range(10):
        samples = policy.act(state, w, budget, seed=step)
        alpha = torch.tensor(np.stack([s.alpha for s in samples]), dtype=torch.float32)
        reward = -alpha[:, :L].sum(1)  # the less attention is pruned, the better
        advantage = (reward - reward.mean()) / reward.std()
        loss = -(advantage * policy.log_prob(state, w, budget, alpha, torch.ones(256, dtype=torch.bool))).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = policy.act(state, w[:1], budget[:1], deterministic=True)[0].alpha[:L].sum()
    assert after < 0.35


def test_checkpoints_from_before_the_budget_prior_load_without_it():
    old = GRPOConfig().to_json()
    del old["policy"]["compression_prior"]
    assert GRPOConfig.from_json(old).policy.compression_prior is False
    assert GRPOConfig.from_json(GRPOConfig().to_json()).policy.compression_prior is True


def test_checkpoints_from_before_self_imitation_load_as_plain_grpo_with_their_ids():
    old = GRPOConfig().to_json()
    del old["imitation_coef"], old["imitation_window"]
    loaded = GRPOConfig.from_json(old)
    assert loaded.imitation_coef == 0
    assert "imitation_coef" not in loaded.identity() and "imitation_window" not in loaded.identity()
    assert GRPOConfig().identity()["imitation_coef"] == 0.5


@pytest.mark.parametrize(
    "option, message",
    [
        ("--imitation", "--imitation must be at least 0 (0 = plain GRPO), got -1.0"),
        ("--replay", "--replay must be at least 0 (0 = no replay), got -1"),
    ],
)
def test_a_negative_imitation_setting_is_refused_in_one_line(tiny_llava, option, message):
    out = invoke("train-policy", str(tiny_llava), "--shapesworld", option, "-1")
    assert out.returncode == 2
    assert out.output.strip() == f"error: {message}"


def _trainer(plans, tmp_path, **overrides) -> GRPOTrainer:
    config = GRPOConfig(prefs_per_iter=2, group_size=2, fixed_budget_groups=1, limit=LIMIT, **overrides)
    # a copy: the trainer installs its policy on the planner, and the module's planner must stay untrained
    return GRPOTrainer(replace(plans), None, PlanStore(tmp_path / "plans.duckdb"), config, tmp_path / "policy.pt")


def test_each_group_imitates_the_archive_plan_its_preference_rewards_most(plans, tmp_path):
    trainer = _trainer(plans, tmp_path)
    L = len(plans.shapes)
    archive = {  # name: (budget, objectives (utility, robustness, compression))
        "useful": (0.30, [1.10, 0.90, 0.30]),
        "robust": (0.31, [0.90, 1.05, 0.31]),
        "larger": (0.32, [0.90, 1.049, 0.32]),  # loses to "robust" only once compression is set to the group's 0.3
        "far": (0.10, [1.30, 1.30, 0.10]),  # best for everyone, but 0.2 away from 0.3
    }
    for i, (budget, objs) in enumerate(archive.values()):
        trainer.state.archive.append({"budget": budget, "alpha": [float(i + 1)] * (2 * L), "objectives": objs})
    utility, robust = (0.8, 0.1, 0.1), (0.1, 0.8, 0.1)
    alpha = np.full(2 * L, 1 / (2 * L))
    groups = [(utility, 0.3, True), (robust, 0.3, True), (utility, 0.45, False), (robust, 0.6, True)]
    assert reward(np.array(archive["larger"][1]), robust) > reward(np.array(archive["robust"][1]), robust)
    samples = [PlanSample(b, alpha, o) for _, b, o in groups for _ in range(2)]
    prefs = [w for w, _, _ in groups for _ in range(2)]
    elites = trainer._elites(prefs, samples)
    picked = {first: int(p.alpha[0]) - 1 for first, p in elites}
    names = list(archive)
    # fixed at 0.3: the in-window plan each preference rewards most; free: the best at any budget; fixed at 0.6:
    # nothing within the window, so no imitation
    assert {first: names[i] for first, i in picked.items()} == {0: "useful", 2: "robust", 4: "far"}
    assert [p.overridden for _, p in elites] == [True, True, False]
    assert _trainer(plans, tmp_path, imitation_coef=0.0)._elites(prefs, samples) == []


def test_replay_imitates_the_archive_best_for_random_preferences_at_fixed_budgets(plans, tmp_path):
    trainer = _trainer(plans, tmp_path, imitation_replay=12)
    assert trainer._replay(0) == [], "an empty archive has nothing to replay"
    L = len(plans.shapes)
    for b in (0.15, 0.25, 0.35, 0.45, 0.55):  # 0.1 apart: at most one budget within ±0.03 of any draw
        for kind, objs in (("useful", [1.1, 0.9, b]), ("robust", [0.9, 1.1, b])):
            alpha = [1.0 if kind == "useful" else 2.0] * (2 * L)
            trainer.state.archive.append({"budget": b, "alpha": alpha, "objectives": objs})
    pairs = trainer._replay(3)
    assert 0 < len(pairs) < 12, "draws with no archive plan within the window are skipped"
    again = trainer._replay(3)
    assert [(w, e.budget, e.alpha.tolist()) for w, e in pairs] == [(w, e.budget, e.alpha.tolist()) for w, e in again]
    assert [p for p, _ in pairs] != [p for p, _ in trainer._replay(4)]
    for pref, elite in pairs:
        assert elite.overridden and abs(sum(pref) - 1) < 1e-9
        assert elite.alpha[0] == (1.0 if pref[0] > pref[1] else 2.0), "the plan the preference rewards more"
    assert _trainer(plans, tmp_path)._replay(3) == [], "off by default"
    assert _trainer(plans, tmp_path, imitation_replay=12, imitation_coef=0.0)._replay(3) == []
    assert "imitation_replay" not in GRPOConfig().identity(), "runs without replay keep their policy ids"
    assert GRPOConfig(imitation_replay=16).identity()["imitation_replay"] == 16


def test_self_imitation_moves_each_preference_toward_its_own_elite(plans, tmp_path):
    trainer = _trainer(plans, tmp_path, kl_coef=0.0)
    state, L = _state(plans), len(plans.shapes)
    rng = np.random.default_rng(0)
    targets = [rng.dirichlet(np.ones(2 * L)) for _ in range(2)]
    prefs = [(0.8, 0.1, 0.1), (0.1, 0.8, 0.1)]
    w = torch.tensor(prefs, dtype=torch.float32)
    budget = torch.tensor([0.3, 0.3])
    elites = [(prefs[i], PlanSample(0.3, targets[i], True)) for i in range(2)]
    uniform = [PlanSample(0.3, np.full(2 * L, 1 / (2 * L)), True)] * 2

    def gaps() -> list[float]:
        means = trainer.policy.act(state, w, budget, deterministic=True)
        return [float(np.abs(m.alpha - t).sum()) for m, t in zip(means, targets)]

    before = gaps()
    for _ in range(40):
        trainer._update(state, w, uniform, np.zeros(2), elites)  # no advantage: only imitation moves the policy
    after = gaps()
    assert all(a < 0.5 * b for a, b in zip(after, before)), (before, after)
    means = trainer.policy.act(state, w, budget, deterministic=True)
    assert np.abs(means[0].alpha - means[1].alpha).sum() > 0.5 * np.abs(targets[0] - targets[1]).sum()


def test_seeded_sampling_repeats_and_leaves_global_rng_alone(plans):
    policy = PrunePolicy(len(STATE_FEATURES))
    w = torch.tensor([[1 / 3] * 3] * 4)
    torch.manual_seed(5)
    before = torch.rand(1)
    torch.manual_seed(5)
    a = policy.act(_state(plans), w, seed=11)
    assert torch.rand(1) == before
    b = policy.act(_state(plans), w, seed=11)
    assert all(x.budget == y.budget and np.array_equal(x.alpha, y.alpha) for x, y in zip(a, b))
    assert len({round(x.budget, 6) for x in a}) == 4  # rows really are sampled


def test_log_prob_drops_the_budget_term_when_overridden(plans):
    policy = PrunePolicy(len(STATE_FEATURES))
    state, w = _state(plans), torch.tensor([[0.5, 0.5, 0.0]] * 2)
    samples = policy.act(state, w, seed=0)
    budget = torch.tensor([s.budget for s in samples])
    alpha = torch.tensor(np.stack([s.alpha for s in samples]), dtype=torch.float32)
    free = policy.log_prob(state, w, budget, alpha, torch.tensor([False, False]))
    fixed = policy.log_prob(state, w, budget, alpha, torch.tensor([True, True]))
    assert torch.isfinite(free).all()
    expected = policy.budget_dist(state, w).log_prob(policy.to_unit(budget))
    assert torch.allclose(free - fixed, expected, atol=1e-5)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((0.5, -0.1, 0.6), "≥ 0"),
        ((0, 0, 0), "all zero"),
        ((float("nan"), 1, 1), "finite"),
        ((0.5, 0.5), "exactly 3"),
        ("abc", "must be 3 numbers"),
    ],
)
def test_bad_preferences_are_refused(bad, message):
    with pytest.raises(HippError, match=message):
        validation.preference(bad)


def test_untrained_planner_says_what_to_run(plans):
    assert not plans.trained
    with pytest.raises(HippError, match="hipp train-policy"):
        plans.blueprint((0.2, 0.7, 0.1))
    with pytest.raises(HippError, match="sparsity must be between 0 and 0.9"):
        plans.blueprint((0.2, 0.7, 0.1), sparsity=0.95)


def test_stability_is_one_when_dense_and_drops_with_a_starved_layer(plans):
    shapes = plans.shapes
    dense = [LayerPlan.dense(s) for s in shapes]
    starved = [LayerPlan((0,), (0,), ()), *dense[1:]]
    make = lambda layers: blueprint_from_layers(
        plans.model_id, plans.family, shapes, 0.0, layers, 8, 0.95, "manual", None, "wanda"
    )
    assert stability(make(dense), plans.features) == pytest.approx(1.0)
    head, mlp = np.asarray(plans.features.head_synflow[0]), np.asarray(plans.features.mlp_synflow[0])
    assert stability(make(starved), plans.features) == pytest.approx(head[0] / (head.sum() + mlp.sum()))


def test_rewards_and_group_advantages():
    obj = np.array([0.9, 0.8, 0.4])
    assert reward(obj, (0.2, 0.7, 0.1)) == pytest.approx(0.18 + 0.56 + 0.04)
    better = np.array([0.9, 0.9, 0.4])  # Tchebycheff is monotone in each objective
    assert reward(better, (0.2, 0.7, 0.1), "tchebycheff") > reward(obj, (0.2, 0.7, 0.1), "tchebycheff")
    adv = _group_advantages(np.array([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), 3)
    assert np.allclose(adv[:3].mean(), 0) and adv[0] < adv[1] < adv[2] and np.allclose(adv[3:], 0)


class _Interrupt(Exception):
    pass


def test_grpo_resumes_after_interruption_without_recomputing(tiny_llava, tmp_path, monkeypatch):
    monkeypatch.setenv("HIPP_HOME", str(tmp_path))
    spec, store = str(tiny_llava), PlanStore()
    config = GRPOConfig(iters=3, prefs_per_iter=2, group_size=3, fixed_budget_groups=1, limit=LIMIT, gate_tau=0.3)
    computed: list[str] = []
    read_back: list[str] = []  # plans the store answered (a plan sampled again in a later iteration)

    class Counting(InProcessEvaluator):
        def evaluate(self, blueprints, progress=None):
            results = super().evaluate(blueprints, progress)
            computed.extend(bp.plan_id if bp else "dense" for bp, r in zip(blueprints, results) if not r.cached)
            read_back.extend(bp.plan_id for bp, r in zip(blueprints, results) if bp and r.cached)
            return results

    def trainer(progress=None) -> GRPOTrainer:
        plans = planner(spec, store, data=SHAPESWORLD)
        ckpt = policy_checkpoint_path(policy_id_for(plans.model_id, config))
        return GRPOTrainer(plans, Counting(spec, "dev", LIMIT, store), store, config, ckpt, progress)

    def stop_after_first(stage, done, total, metrics=None):
        if stage == "GRPO" and done == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        trainer(stop_after_first).run()
    first = trainer()
    assert first.resume() and first.state.iteration == 1
    state = first.run()
    assert [c["iter"] for c in state.curve] == [1, 2, 3]
    assert len(computed) == len(set(computed))  # nothing was evaluated twice across the interruption
    record = store.latest_policy(first.planner.model_id)
    assert record.policy_id == first.policy_id and len(record.curve) == 3
    assert state.curve[-1]["evaluations"] == len(state.scored) > 0
    assert state.curve[-1]["from_store"] == len(read_back) > 0  # counted across the interruption too
    trained = planner(spec, store)
    bp = trained.blueprint((0.2, 0.7, 0.1), sparsity=0.3)
    assert bp.source == "policy" and abs(bp.achieved - 0.3) < 0.05 and bp.preference == pytest.approx((0.2, 0.7, 0.1))


def test_train_policy_killed_then_rerun_finishes_the_same_run(tiny_qwen, isolated_store):
    """SIGKILL hits a real `hipp train-policy` process; the rerun (in this process) continues from its checkpoint."""
    args = [
        "train-policy",
        str(tiny_qwen),
        "--iters",
        "3",
        "--shapesworld",
        "--group-size",
        "2",
        "--prefs",
        "2",
        "--limit",
        str(LIMIT),
    ]
    policies = isolated_store / "policies"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hipp_core.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while not list(policies.glob("*.pt")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    from hipp_core.grpo import load_policy

    _, ckpt = load_policy(next(policies.glob("*.pt")))
    done = json.loads(ckpt["state"])["curve"]
    assert 1 <= len(done) < 3
    rerun = invoke(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert "3 iterations" in rerun.stdout
    _, ckpt = load_policy(next(policies.glob("*.pt")))
    assert json.loads(ckpt["state"])["curve"][: len(done)] == done  # the killed run's iterations were kept
    out = invoke("blueprint", str(tiny_qwen), "--pref", "0.2,0.7,0.1", "--sparsity", "0.3")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["preference"] == pytest.approx([0.2, 0.7, 0.1])
    for bad in ("1,-1,1", "a,b,c"):  # the rules themselves are tested on validation.preference
        err = invoke("blueprint", str(tiny_qwen), "--pref", bad)
        assert err.returncode == 2 and len(err.stderr.strip().splitlines()) == 1 and "pref" in err.stderr
    err = invoke("blueprint", str(tiny_qwen), "--pref", "1,1,1", "--sparsity", "1.5")
    assert err.returncode == 2 and "sparsity must be between 0 and 0.9" in err.stderr


def test_search_peers_score_the_same_space(plans, tiny_llava):
    evaluator = InProcessEvaluator(str(tiny_llava), "dev", LIMIT)
    nsga = nsga2_search(plans, evaluator, n_evals=7, pop_size=4, seed=0)
    rand = random_search(plans, evaluator, n_evals=5, seed=0)
    assert len(nsga) == 7 and len(rand) == 5
    for point in nsga + rand:
        assert point.blueprint.source == "search"
        assert np.isfinite(point.objectives).all() and point.objectives[2] == point.blueprint.achieved
    assert hypervolume(np.stack([p.objectives for p in nsga])) > 0
    assert hypervolume(np.array([[1.0, 1.0, 0.5]])) == pytest.approx(0.5)


def test_nsga2_at_a_fixed_budget_proposes_every_plan_at_that_budget(plans, tiny_llava):
    evaluator = InProcessEvaluator(str(tiny_llava), "dev", LIMIT)
    fixed = nsga2_search(plans, evaluator, n_evals=8, pop_size=4, seed=0, budget=0.3)
    assert len(fixed) == 8 and len({p.blueprint.plan_id for p in fixed}) > 1  # allocations still vary
    # On this tiny decoder 8 MLP channels are 5% of the parameters: what rounding to units may cost.
    unit = max(shape.mlp_params(plans.m) for shape in plans.shapes) / plans.dense_params()
    for point in fixed:
        assert point.blueprint.budget == 0.3 and abs(point.blueprint.achieved - 0.3) <= unit
        assert point.objectives[2] == point.blueprint.achieved
    free = nsga2_search(plans, evaluator, n_evals=4, pop_size=4, seed=0)
    budgets = [p.blueprint.budget for p in free]
    assert max(budgets) - min(budgets) > 2 * unit  # without a fixed budget, the budget is searched
    with pytest.raises(HippError, match="fixed budget must be between 0 and 0.9"):
        nsga2_search(plans, evaluator, n_evals=4, budget=0.95)


def test_a_policy_bundled_with_the_checkpoint_is_used_only_for_its_own_weights(tiny_llava, tmp_path, monkeypatch):
    import shutil

    from hipp_core.api import BUNDLED_POLICY, train_policy

    monkeypatch.setenv("HIPP_HOME", str(tmp_path / "trainer"))
    config = GRPOConfig(iters=1, prefs_per_iter=2, group_size=2, fixed_budget_groups=1, limit=LIMIT)
    trained = train_policy(str(tiny_llava), config=config, data=SHAPESWORLD)
    model_dir = tmp_path / "ckpt"
    shutil.copytree(tiny_llava, model_dir)
    shutil.copy(trained.checkpoint_path, model_dir / BUNDLED_POLICY)
    monkeypatch.setenv("HIPP_HOME", str(tmp_path / "fresh"))  # a store that never saw the training
    assert planner(str(model_dir)).trained
    assert PlanStore().latest_policy(trained.model_id).policy_id == trained.policy_id
    ckpt = torch.load(model_dir / BUNDLED_POLICY, weights_only=True)
    ckpt["model_id"] = "someone-else"
    torch.save(ckpt, model_dir / BUNDLED_POLICY)
    monkeypatch.setenv("HIPP_HOME", str(tmp_path / "fresh2"))
    assert not planner(str(model_dir), data=SHAPESWORLD).trained


def test_a_stored_policy_from_an_older_network_does_not_stop_training_a_new_one(tiny_llava, tmp_path, monkeypatch):
    from hipp_core.api import train_policy

    monkeypatch.setenv("HIPP_HOME", str(tmp_path))
    config = GRPOConfig(iters=1, prefs_per_iter=2, group_size=2, fixed_budget_groups=1, limit=LIMIT)
    old = train_policy(str(tiny_llava), config=config, data=SHAPESWORLD)
    ckpt = torch.load(old.checkpoint_path, weights_only=True)
    ckpt["policy"] = {k: v for k, v in ckpt["policy"].items() if not k.startswith("split.")}  # before the split head
    torch.save(ckpt, old.checkpoint_path)
    with pytest.raises(HippError, match="does not fit this version's policy network.*retrain"):
        planner(str(tiny_llava))
    new = train_policy(str(tiny_llava), config=replace(config, seed=1), data=SHAPESWORLD)
    assert new.policy_id != old.policy_id and planner(str(tiny_llava)).policy_id == new.policy_id

"""Sensitivity profiling (cache, shapes) on the tiny model, and policy allocation and the loss
predictor on synthetic and measured tables."""
import numpy as np
import pytest

from workloads.errors import UserError
from workloads.luc import sensitivity
from workloads.luc.allocate import allocate, average
from workloads.luc.policy import LayerPolicy, Policy
from workloads.luc.predict import predict_loss_increase
from workloads.luc.sensitivity import profile_sensitivity
from workloads.luc.table import SensitivityTable
from workloads.luc.uniform import uniform_policy

LADDER = dict(seq_len=32, windows=2, sparsities=(0.3, 0.6), bits=(3,), progress=False)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny_table(tiny, cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGELLM_CACHE", str(cache))
    try:
        yield profile_sensitivity(tiny, joint=[(0.6, 3)], **LADDER)
    finally:
        mp.undo()


def synthetic(n=30, seed=0, params=None):
    """Pruning losses ~ sigma * s^3 and rounding losses ~ 4^-bits, random per-layer scales."""
    rng = np.random.default_rng(seed)
    s_levels = [round(0.1 * k, 1) for k in range(1, 10)]
    b_levels = [2, 3, 4, 5]
    sig_s, sig_b = np.exp(rng.normal(0, 1, n)), np.exp(rng.normal(0, 1, n))
    return SensitivityTable(
        key={"model": "synthetic", "pattern": "unstructured", "prune": "wanda", "quant": "rtn", "group_size": 128},
        sparsities=s_levels,
        bits=b_levels,
        prune=np.array([[g * s**3 for s in s_levels] for g in sig_s]),
        quant=np.array([[g * 4.0 ** (2 - b) for b in b_levels] for g in sig_b]),
        layer_params=params or [1000] * n,
        outlier_ratio=list(rng.random(n) * 0.02),
        base_loss=3.0,
    )


# -- profiling ---------------------------------------------------------------------------------
def test_table_shape_and_values(tiny_table):
    t = tiny_table
    assert t.prune.shape == (4, 2) and t.quant.shape == (4, 1) and t.joint.shape == (4, 2, 1)
    assert np.all(t.prune >= 0) and np.all(np.isfinite(t.prune)) and np.all(t.quant >= 0)
    # More pruning moves the predictions further in (almost) every layer.
    assert np.mean(t.prune[:, 1] > t.prune[:, 0]) >= 0.75
    assert len(t.outlier_ratio) == 4 and all(0 <= r < 1 for r in t.outlier_ratio)
    assert t.layer_params == [t.layer_params[0]] * 4 and t.base_loss > 0
    assert t.degradation(2, 0.6, 3) == pytest.approx(t.joint[2, 1, 0])  # measured cell wins
    assert t.degradation(2, 0.0, 16) == 0.0


def test_second_run_hits_the_cache(tiny, tiny_table, cache, monkeypatch):
    monkeypatch.setenv("EDGELLM_CACHE", str(cache))

    def no_measuring(*args, **kwargs):
        raise AssertionError("measured again despite the cache")

    monkeypatch.setattr(sensitivity, "_measure", no_measuring)
    again = profile_sensitivity(tiny, joint=[(0.6, 3)], **LADDER)
    assert again.key == tiny_table.key and np.array_equal(again.prune, tiny_table.prune)
    assert list((cache / "sensitivity").glob("*.json"))
    with pytest.raises(AssertionError, match="measured again"):  # another method is another entry
        profile_sensitivity(tiny, prune="magnitude", joint=[(0.6, 3)], **LADDER)


def test_cache_key_sees_changed_weights(tiny):
    import copy

    before = sensitivity.weights_fingerprint(tiny.model)
    changed = copy.deepcopy(tiny.model)
    changed.model.layers[1].mlp.down_proj.weight.data.mul_(0.5)
    assert sensitivity.weights_fingerprint(changed) != before


def test_table_round_trips_through_json(tiny_table, tmp_path):
    path = tmp_path / "t.json"
    tiny_table.save(path)
    loaded = SensitivityTable.load(path)
    assert np.allclose(loaded.prune, tiny_table.prune) and loaded.key == tiny_table.key
    assert loaded.degradation(1, 0.45, 3) == pytest.approx(tiny_table.degradation(1, 0.45, 3))
    path.write_text("{}")
    with pytest.raises(UserError, match="not a sensitivity table"):
        SensitivityTable.load(path)


def test_bad_profiling_arguments(tiny):
    with pytest.raises(UserError, match="bit-widths"):
        profile_sensitivity(tiny, **{**LADDER, "bits": (1,)})
    with pytest.raises(UserError, match="joint cell"):
        profile_sensitivity(tiny, joint=[(0.5, 3)], **LADDER)


# -- allocation --------------------------------------------------------------------------------
@pytest.mark.parametrize("rule", ["paper", "owl", "optimal"])
@pytest.mark.parametrize("budget", [(0.5, 4), (0.7, 3), (0.3, 3.5), (0.6, 16), (0.0, 2.5)])
def test_budgets_are_met(rule, budget):
    table = synthetic()
    policy = allocate(table, *budget, rule=rule)
    s, b = average(policy, table)
    assert s == pytest.approx(budget[0], abs=1e-6)
    assert abs(b - budget[1]) <= 0.005 * budget[1]
    assert all(0.0 <= lp.sparsity <= 0.9 for lp in policy.layers.values())
    assert policy.meta["rule"] == rule and policy.prune == "wanda"


def test_budgets_weighted_by_parameters():
    params = [1000] * 10 + [3000] * 10  # two layer sizes
    table = synthetic(20, params=params)
    for rule in ("paper", "owl", "optimal"):
        s, b = average(allocate(table, 0.5, 3.5, rule=rule, tolerance=0.01), table)
        assert s == pytest.approx(0.5, abs=1e-6) and b == pytest.approx(3.5, abs=0.035)


def test_measured_table_allocates(tiny_table):
    for rule in ("paper", "owl", "optimal"):
        policy = allocate(tiny_table, 0.45, 3.25, rule=rule)
        assert average(policy, tiny_table) == pytest.approx((0.45, 3.25), abs=1e-6)


@pytest.mark.parametrize(
    "budget,kwargs,needle",
    [
        ((0.95, 4), {}, "average sparsity 0.95 is impossible"),
        ((0.5, 9), {}, "average of 9 bits is impossible"),
        ((0.5, 3.1), {}, "cannot be met within 0.5%"),
        ((0.3, 4), {"sparsity_range": (0.4, 0.8)}, "per-layer range 0.4..0.8"),
    ],
)
def test_impossible_budgets_are_one_clear_error(budget, kwargs, needle):
    table = synthetic(4)
    with pytest.raises(UserError, match=needle):
        allocate(table, *budget, **kwargs)


def test_optimal_beats_the_rules_and_uniform():
    table = synthetic()
    for budget in [(0.5, 4), (0.7, 3), (0.4, 3.5)]:
        best = predict_loss_increase(table, allocate(table, *budget, rule="optimal"))
        for rule in ("paper", "owl"):
            assert best <= predict_loss_increase(table, allocate(table, *budget, rule=rule)) + 1e-9
        assert best < predict_loss_increase(table, uniform_policy(table, *budget))


def test_paper_rule_compresses_less_sensitive_layers_more():
    table = synthetic()
    policy = allocate(table, 0.5, 4, rule="paper")
    sens = table.prune[:, 4]  # at 0.5
    s = np.array([policy.layers[i].sparsity for i in range(30)])
    unclamped = (s > 0.0) & (s < 0.9)
    order = np.argsort(sens[unclamped])
    assert np.all(np.diff(s[unclamped][order]) <= 1e-9)
    flat = allocate(table, 0.5, 4, rule="paper", sharpness=0.0)
    assert all(lp.sparsity == pytest.approx(0.5) and lp.w_bits == 4 for lp in flat.layers.values())


def test_owl_rule_follows_outliers_within_lambda():
    table = synthetic()
    policy = allocate(table, 0.5, 3.5, rule="owl", owl_lambda=0.1)
    s = np.array([policy.layers[i].sparsity for i in range(30)])
    b = np.array([policy.layers[i].w_bits for i in range(30)])
    order = np.argsort(table.outlier_ratio)
    assert np.all(np.diff(s[order]) <= 1e-9)  # more outliers, lower sparsity
    assert np.all(np.diff(b[order]) >= 0)  # ... and the wider width
    assert s.max() - s.min() <= 0.2 + 1e-9


def test_nm_pattern_fixes_sparsity():
    table = synthetic(8)
    table.key["pattern"] = "2:4"
    policy = allocate(table, 0.5, 3.5, rule="optimal")
    assert {lp.sparsity for lp in policy.layers.values()} == {0.5} and policy.pattern == "2:4"
    with pytest.raises(UserError, match="must lie in 0..0.5"):
        allocate(table, 0.6, 4)


@pytest.mark.parametrize("rule", ["optimal", "paper", "owl"])
def test_nm_pattern_mixed_with_dense_layers(rule):
    """Below 1 - N/M on average, each layer is N:M or dense: the least harmful ones go N:M."""
    table = synthetic(8)
    table.key["pattern"] = "2:4"
    policy = allocate(table, 0.25, 4, rule=rule)
    s = np.array([policy.layers[i].sparsity for i in range(8)])
    assert set(s.tolist()) == {0.0, 0.5} and (s == 0.5).sum() == 4
    assert average(policy, table)[0] == pytest.approx(0.25)
    pruned, dense = np.flatnonzero(s > 0), np.flatnonzero(s == 0)
    if rule == "optimal":  # the loss-optimal split beats both heuristics' at the same budget
        loss = predict_loss_increase(table, policy)
        assert all(loss <= predict_loss_increase(table, allocate(table, 0.25, 4, rule=r)) + 1e-12
                   for r in ("paper", "owl"))
    else:  # equal layers: a ranking, by pruning sensitivity or by outlier ratio
        score = (np.asarray(table.outlier_ratio) if rule == "owl"
                 else np.array([float(table.prune_curve(i, 0.5)) for i in range(8)]))
        assert score[pruned].max() <= score[dense].min()
    assert allocate(table, 0.0, 4, rule=rule).layers[0].sparsity == 0.0


def test_uniform_split_by_layer_index():
    table = synthetic(30)
    policy = uniform_policy(table, 0.5, 3.5)
    widths = [lp.w_bits for lp in policy.layers.values()]
    assert widths == [4] * 15 + [3] * 15 and average(policy, table) == pytest.approx((0.5, 3.5))


def test_uniform_nm_below_its_sparsity_splits_by_index():
    table = synthetic(10)
    table.key["pattern"] = "2:4"
    policy = uniform_policy(table, 0.2, 4)
    assert [lp.sparsity for lp in policy.layers.values()] == [0.0] * 6 + [0.5] * 4
    assert average(policy, table) == pytest.approx((0.2, 4.0))
    assert [lp.sparsity for lp in uniform_policy(table, 0.5, 4).layers.values()] == [0.5] * 10


# -- predictor ---------------------------------------------------------------------------------
def test_predictor_sums_layers_and_grows_with_compression():
    table = synthetic(6)
    policy = Policy.uniform(6, 0.5, 4)
    total = predict_loss_increase(table, policy)
    assert total == pytest.approx(sum(table.degradation(i, 0.5, 4) for i in range(6)))
    harder = Policy.uniform(6, 0.5, 4)
    harder.layers[2] = LayerPolicy(0.65, 3)
    assert predict_loss_increase(table, harder) > total
    assert predict_loss_increase(table, Policy.dense(6)) == 0.0
    # Sparsity between measured levels is interpolated, bits beyond them extrapolated.
    assert table.degradation(0, 0.55, 16) == pytest.approx((table.prune[0, 4] + table.prune[0, 5]) / 2)
    assert table.degradation(0, 0.0, 6) == pytest.approx(table.quant[0, 3] / 4)
    assert table.degradation(0, 0.36, 3) == pytest.approx(float(table.prune_curve(0, 0.36)) + table.quant[0, 1] * 0.8)

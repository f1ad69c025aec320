"""Modules: registration order and names, state dicts and their errors, modes, freezing, layers."""
import numpy
import pytest

from minillm import backend
from minillm.autograd import Tensor
from minillm.nn import Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Parameter


class Tower(Module):
    """Two blocks and a head that reuses the first block's weight (tying)."""

    def __init__(self, seed=0):
        super().__init__()
        rng = backend.host_rng(seed)
        self.embed = Embedding(5, 4, rng, dtype="float64")
        self.h = ModuleList([Linear(4, 4, rng=rng, dtype="float64"), Linear(4, 4, bias=False, rng=rng,
                                                                            dtype="float64")])
        self.norm = LayerNorm(4, dtype="float64")
        self.scale = Parameter(backend.asarray(numpy.ones(1)))
        self.tied = self.embed.weight                     # a second name for one parameter
        self.drop = Dropout(0.5, rng=1)

    def forward(self, ids):
        x = self.embed(ids)
        for layer in self.h:
            x = layer(x)
        return self.drop(self.norm(x)) * self.scale


def test_parameters_are_registered_in_assignment_order_with_dotted_names():
    names = [name for name, _ in Tower().named_parameters()]
    assert names == ["embed.weight", "h.0.weight", "h.0.bias", "h.1.weight", "norm.weight", "norm.bias", "scale"]


def test_a_shared_parameter_is_listed_once():
    tower = Tower()
    params = tower.parameters()
    assert len(params) == len({id(p) for p in params}) == 7
    assert tower.num_parameters() == 5 * 4 + 16 + 4 + 16 + 4 + 4 + 1


def test_reassigning_an_attribute_replaces_or_unregisters():
    layer = Linear(3, 2)
    layer.bias = None
    assert [n for n, _ in layer.named_parameters()] == ["weight"]
    tower = Tower()
    tower.norm = LayerNorm(4, bias=False)                 # replaced in place: same position
    names = [name for name, _ in tower.named_parameters()]
    assert names[-2:] == ["norm.weight", "scale"]
    del tower.scale
    assert "scale" not in [name for name, _ in tower.named_parameters()]


def test_module_without_super_init_is_a_clear_error():
    class Broken(Module):
        def __init__(self):
            self.layer = Linear(2, 2)

    with pytest.raises(RuntimeError, match=r"call super\(\)\.__init__\(\)"):
        Broken()


def test_named_modules_and_modes():
    tower = Tower()
    assert [name for name, _ in tower.named_modules()] == ["", "embed", "h", "h.0", "h.1", "norm", "drop"]
    assert tower.training and tower.drop.training
    tower.eval()
    assert not any(m.training for m in tower.modules())
    tower.train()
    assert all(m.training for m in tower.modules())


# ---------------------------------------------------------------- state dicts

def test_state_dict_round_trip_into_a_fresh_module():
    source, target = Tower(seed=1), Tower(seed=2)
    state = source.state_dict()
    assert list(state) == [name for name, _ in source.named_parameters()]
    assert all(isinstance(v, numpy.ndarray) for v in state.values())
    result = target.load_state_dict(state)
    assert result.missing == [] and result.unexpected == []
    for (name, a), b in zip(source.named_parameters(), target.parameters()):
        assert numpy.array_equal(backend.to_numpy(a.data), backend.to_numpy(b.data)), name
    assert target.tied is target.embed.weight                        # loading keeps the tie


def test_state_dict_is_a_snapshot():
    tower = Tower()
    state = tower.state_dict()
    tower.h[0].weight.data += 1.0
    assert not numpy.array_equal(state["h.0.weight"], backend.to_numpy(tower.h[0].weight.data))


def test_load_state_dict_names_missing_unexpected_and_misshaped_entries():
    tower = Tower()
    state = tower.state_dict()
    before = tower.state_dict()
    missing = {k: v for k, v in state.items() if k != "h.0.bias"}
    with pytest.raises(KeyError, match=r"missing entries \['h.0.bias'\]"):
        tower.load_state_dict(missing)
    with pytest.raises(KeyError, match=r"unexpected entries \['lm_head.weight'\]"):
        tower.load_state_dict({**state, "lm_head.weight": numpy.zeros((5, 4))})
    bad = {**state, "norm.weight": numpy.zeros(5), "h.0.weight": numpy.zeros((4, 4))}
    with pytest.raises(ValueError, match=r"norm.weight: expected shape \(4\), given \(5\)"):
        tower.load_state_dict(bad)
    after = tower.state_dict()
    assert all(numpy.array_equal(before[k], after[k]) for k in before)  # a failed load changes nothing
    result = tower.load_state_dict({**missing, "extra": numpy.zeros(2)}, strict=False)
    assert result.missing == ["h.0.bias"] and result.unexpected == ["extra"]


def test_load_state_dict_casts_to_the_parameter_dtype():
    layer = Linear(2, 3)                                             # float32
    layer.load_state_dict({"weight": numpy.ones((2, 3)), "bias": numpy.arange(3.0)})
    assert layer.weight.dtype == numpy.float32
    assert numpy.array_equal(backend.to_numpy(layer.bias.data), [0, 1, 2])


# ---------------------------------------------------------------- freezing

def test_frozen_parameter_gets_no_gradient():
    tower = Tower()
    tower.eval()
    tower.h[0].weight.requires_grad = False
    assert tower.num_parameters(trainable_only=True) == tower.num_parameters() - 16
    ids = numpy.array([[0, 1, 2], [3, 4, 0]])
    tower(ids).backward(numpy.random.default_rng(0).standard_normal((2, 3, 4)))
    assert tower.h[0].weight.grad is None
    assert tower.h[0].bias.grad is not None and tower.embed.weight.grad is not None
    tower.zero_grad()
    assert all(p.grad is None for p in tower.parameters())


# ---------------------------------------------------------------- layers

def test_linear_is_x_w_plus_b_with_weight_in_by_out():
    layer = Linear(3, 5, rng=4, dtype="float64")
    assert layer.weight.shape == (3, 5) and layer.bias.shape == (5,)
    layer.bias.data[...] = backend.asarray(numpy.arange(5.0))
    x = numpy.random.default_rng(1).standard_normal((2, 4, 3))
    w = backend.to_numpy(layer.weight.data)
    numpy.testing.assert_allclose(backend.to_numpy(layer(x).data), x @ w + numpy.arange(5.0), rtol=1e-12)
    assert Linear(3, 5, bias=False)(Tensor(x)).shape == (2, 4, 5)
    assert numpy.array_equal(backend.to_numpy(Linear(3, 5, rng=4).weight.data),
                             backend.to_numpy(Linear(3, 5, rng=4).weight.data))      # same seed


def test_layer_initial_weights():
    big = Linear(200, 300, rng=0, std=0.02)
    w = backend.to_numpy(big.weight.data)
    assert abs(w.std() - 0.02) < 0.001 and abs(w.mean()) < 0.001 and w.dtype == numpy.float32
    assert not backend.to_numpy(big.bias.data).any()
    norm = LayerNorm(6)
    assert (backend.to_numpy(norm.weight.data) == 1).all() and not backend.to_numpy(norm.bias.data).any()


def test_embedding_and_layer_norm_compute_their_formulas():
    table = Embedding(5, 3, rng=2, dtype="float64")
    ids = numpy.array([[4, 0, 4]])
    numpy.testing.assert_array_equal(backend.to_numpy(table(ids).data), backend.to_numpy(table.weight.data)[ids])
    norm = LayerNorm(4, dtype="float64")
    x = numpy.random.default_rng(3).standard_normal((3, 4)) * 5 + 2
    expected = (x - x.mean(-1, keepdims=True)) / numpy.sqrt(x.var(-1, keepdims=True) + 1e-5)
    numpy.testing.assert_allclose(backend.to_numpy(norm(x).data), expected, rtol=1e-10)


def test_dropout_is_seeded_and_the_identity_in_eval():
    x = Tensor(numpy.ones((50, 40)))
    first, second = Dropout(0.25, rng=7), Dropout(0.25, rng=7)
    a, b = backend.to_numpy(first(x).data), backend.to_numpy(second(x).data)
    assert numpy.array_equal(a, b)                                   # same seed, same mask
    assert set(numpy.unique(a)) == {0.0, 1.0 / 0.75}
    assert 0.2 < (a == 0).mean() < 0.3
    assert not numpy.array_equal(a, backend.to_numpy(first(x).data))  # the generator moves on
    first.eval()
    assert first(x) is x
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\), got 1.0"):
        Dropout(1.0)


def test_generators_are_registered_by_type_whatever_the_attribute_is_called():
    class Noisy(Module):
        def __init__(self):
            super().__init__()
            self.first = Dropout(0.1, rng=1)
            self.shared = backend.device_rng(2)          # any name: found because it is a generator
            self.again = Dropout(0.1, rng=self.shared)   # shared: listed once
            self.seed = 3                                # not a generator
    model = Noisy()
    assert model.generators() == [model.shared, model.first.rng]   # module order: own first, then children
    model.shared = None                                  # replaced by a non-generator: forgotten
    assert model.generators() == [model.first.rng, model.again.rng]
    del model.first
    assert model.generators() == [model.again.rng]


def test_eval_mode_turns_dropout_off_records_no_graph_and_restores_the_mode():
    from minillm import is_grad_enabled
    from minillm.nn import eval_mode
    tower = Tower()
    tower.train()
    with eval_mode(tower) as inside:
        assert inside is tower and not tower.training and not tower.drop.training
        assert not is_grad_enabled()
    assert tower.training and tower.drop.training and is_grad_enabled()
    tower.eval()
    with pytest.raises(KeyError):
        with eval_mode(tower):
            raise KeyError("boom")
    assert not tower.training and is_grad_enabled()                 # the previous mode, even after an error
    with eval_mode(lambda x: x):                                     # a plain callable: no graph only
        assert not is_grad_enabled()

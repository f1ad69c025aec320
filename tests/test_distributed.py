"""Data parallelism: the engine choice, the flat buffer, the averaging, and real runs under mpiexec -n 2.

The MPI tests start ``mpiexec -n 2 python tests/distributed_worker.py`` (or the
demo) with a timeout, and end every rank by its pid afterwards: MPICH's ranks
start sessions of their own, so killing mpiexec's process group would leave them.
"""
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import types

import numpy
import pytest
from hypothesis import given, settings, strategies as st

from minillm import GPT, GPTConfig, backend, checkpoint, distributed
from minillm.train import TrainConfig, Trainer
from tests import distributed_worker as worker

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(REPO, "tests", "distributed_worker.py")


# ------------------------------------------------------------ without MPI

def test_the_engine_is_chosen_from_the_world_size_and_the_backend():
    assert distributed.choose(1, "numpy") == "single" and distributed.choose(1, "cupy") == "single"
    assert distributed.choose(2, "numpy") == "mpi" and distributed.choose(8, "cupy") == "nccl"
    assert distributed.choose(4, "cupy", "mpi") == "mpi"                  # MPI through host memory
    with pytest.raises(ValueError, match="'nccl' reduces GPU arrays: set MINILLM_BACKEND=cupy"):
        distributed.choose(2, "numpy", "nccl")
    with pytest.raises(ValueError, match="unknown distributed engine 'gloo'"):
        distributed.choose(2, "numpy", "gloo")


def test_the_world_size_comes_from_the_launcher():
    assert distributed.launched_world_size({}) == 1
    assert distributed.launched_world_size({"PMI_SIZE": "4"}) == 4                  # MPICH (Hydra)
    assert distributed.launched_world_size({"OMPI_COMM_WORLD_SIZE": "3"}) == 3      # Open MPI
    assert distributed.launched_world_size({"PMI_SIZE": "", "OMPI_COMM_WORLD_SIZE": "x"}) == 1


def test_a_plain_process_is_a_single_process_world():
    world = distributed.init()
    assert type(world) is distributed.SingleProcess and (world.rank, world.size) == (0, 1)
    assert "mpi4py.MPI" not in sys.modules or os.environ.get("PMI_SIZE")   # MPI is not even loaded


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 8), st.integers(1, 6))
def test_shards_cover_the_global_batch_once_in_order(size, rows):
    batch = numpy.arange(size * rows)
    shards = [batch[distributed.shard_rows(len(batch), rank, size)] for rank in range(size)]
    assert all(len(s) == rows for s in shards)
    numpy.testing.assert_array_equal(numpy.concatenate(shards), batch)


def test_an_indivisible_batch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"batch_size 12 cannot be split evenly over 5 ranks: use a multiple of 5"):
        distributed.shard_rows(12, 0, 5)


shapes = st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple), min_size=1, max_size=4)


@settings(max_examples=25, deadline=None)
@given(shapes, st.lists(st.floats(-10, 10), max_size=2))
def test_flatten_then_unflatten_gives_back_every_array_and_the_tail(shapes, tail):
    rng = numpy.random.default_rng(0)
    arrays = [backend.asarray(rng.standard_normal(s).astype("float32")) for s in shapes]
    flat = distributed.flatten(arrays, tail=tail)
    assert flat.shape == (sum(a.size for a in arrays) + len(tail),) and flat.dtype == numpy.float32
    views, rest = distributed.unflatten(flat, shapes)
    for a, v in zip(arrays, views):
        assert v.shape == a.shape
        numpy.testing.assert_array_equal(backend.to_numpy(v), backend.to_numpy(a))
    numpy.testing.assert_allclose(backend.to_numpy(rest), numpy.float32(tail))
    if flat.size:                                           # views, not copies: writes reach the buffer
        flat[...] = 7
        assert all((backend.to_numpy(v) == 7).all() for v in views)


def test_one_flat_buffer_holds_one_dtype_and_enough_elements():
    xp = backend.xp
    with pytest.raises(ValueError, match="the shapes need 8 elements, the buffer has 7"):
        distributed.unflatten(xp.zeros(7), [(2, 2), (4,)])
    with pytest.raises(TypeError, match="array 1 is float64, array 0 is float32"):
        distributed.flatten([xp.zeros(2, dtype=xp.float32), xp.zeros(2, dtype=xp.float64)])


def test_the_ring_all_reduce_cost_model():
    ring = distributed.ring_allreduce_seconds
    assert ring(1e9, 1, 1e9, latency=1e-3) == 0.0                            # alone: nothing to send
    assert ring(1e9, 2, 1e9, latency=1e-3) == pytest.approx(1.0 + 2e-3)      # 2 steps of half the bytes
    assert ring(1e9, 4, 1e9) == pytest.approx(1.5)                           # 6 steps of a quarter
    assert ring(1e9, 10**6, 1e9) == pytest.approx(2.0, rel=1e-5)             # tends to 2 * bytes / bandwidth
    assert distributed.scaling_efficiency(0.3, 0.1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="bandwidth > 0"):
        ring(1e9, 2, 0.0)


class EchoWorld(distributed.World):
    """A pretend world of ``size`` ranks that all hold this rank's buffer: the sum is size * buffer."""

    name = "echo"

    def __init__(self, size, digests=None):
        super().__init__()
        self.size, self.digests = size, digests

    def _allreduce_sum(self, buffer):
        buffer *= self.size

    def _broadcast(self, buffer):
        buffer[...] = 0.5                                    # "rank 0's values"

    def _allgather(self, value):
        return [value] + (self.digests or [value] * (self.size - 1))


def tiny_gpt():
    return GPT(GPTConfig(vocab_size=7, block_size=4, n_layer=1, n_head=1, n_embd=4, dtype="float64"), seed=0)


def test_averaging_replaces_every_gradient_and_the_scalars_by_the_mean():
    model = tiny_gpt()
    rng = numpy.random.default_rng(1)
    params = model.parameters()
    for p in params[1:]:
        p.grad = backend.asarray(rng.standard_normal(p.shape))
    params[0].grad = None                                    # unused on this rank: counts as zero
    before = [None if p.grad is None else backend.to_numpy(p.grad).copy() for p in params]
    loss, = EchoWorld(3).average_gradients(params, 2.5)
    assert loss == 2.5
    numpy.testing.assert_array_equal(backend.to_numpy(params[0].grad), numpy.zeros(params[0].shape))
    for p, g in zip(params[1:], before[1:]):
        numpy.testing.assert_allclose(backend.to_numpy(p.grad), g, rtol=1e-15)


def test_broadcast_writes_rank_0s_values_into_the_parameters():
    model = tiny_gpt()
    EchoWorld(2).broadcast_parameters(model.parameters())
    assert all((p.numpy() == 0.5).all() for p in model.parameters())


def test_the_replica_check_names_the_rank_that_drifted():
    model = tiny_gpt()
    EchoWorld(3).assert_replicas_equal(model.parameters(), step=4)             # all equal: silent
    with pytest.raises(RuntimeError, match=r"after step 4 the parameters of rank\(s\) \[2\] differ"):
        world = EchoWorld(3)
        world._allgather = lambda value: [value, value, "something else"]
        world.assert_replicas_equal(model.parameters(), step=4)


def test_one_process_averages_nothing_and_leaves_gradients_alone():
    world, model = distributed.SingleProcess(), tiny_gpt()
    p = model.parameters()[0]
    p.grad = backend.xp.ones(p.shape)
    grad = p.grad
    assert world.average_gradients(model.parameters(), 3.0) == [3.0] and p.grad is grad
    assert world.average([1.0, 2.0]) == [1.0, 2.0] and world.comm_calls == 0
    rows = numpy.arange(6).reshape(3, 2)
    numpy.testing.assert_array_equal(world.shard(rows), rows)


def test_the_trainer_refuses_a_batch_the_ranks_cannot_split():
    with pytest.raises(ValueError, match="batch_size 4 cannot be split evenly over 3 ranks"):
        worker.make_trainer(world=EchoWorld(3))


def test_the_nccl_engine_reduces_in_place_on_the_current_stream():
    """No GPU here: a stand-in for cupy.cuda.nccl records the call NCCLWorld makes."""
    calls = []
    fake_nccl = types.SimpleNamespace(NCCL_FLOAT16=6, NCCL_FLOAT32=7, NCCL_FLOAT64=8, NCCL_SUM=0)
    fake_nccl_comm = types.SimpleNamespace(allReduce=lambda *a: calls.append(("allReduce",) + a),
                                           bcast=lambda *a: calls.append(("bcast",) + a))
    fake_cupy = types.SimpleNamespace(cuda=types.SimpleNamespace(
        get_current_stream=lambda: types.SimpleNamespace(ptr=99)))
    world = object.__new__(distributed.NCCLWorld)
    world.nccl, world.cupy, world.nccl_comm = fake_nccl, fake_cupy, fake_nccl_comm
    buffer = types.SimpleNamespace(data=types.SimpleNamespace(ptr=1234), size=10, dtype=numpy.dtype("float32"))
    world._allreduce_sum(buffer)
    world._broadcast(buffer)
    assert calls == [("allReduce", 1234, 1234, 10, 7, 0, 99), ("bcast", 1234, 10, 7, 0, 99)]
    with pytest.raises(TypeError, match="NCCL all-reduce of int64 is not supported"):
        world._nccl_dtype(numpy.zeros(1, dtype=numpy.int64))


# ------------------------------------------------------------ under mpiexec -n 2

def _mpi_missing():
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        return "mpi4py is not installed (pip install -e \".[dist]\" brings mpi4py and the MPICH wheel)"
    if shutil.which("mpiexec") is None:
        return "mpi4py is installed but there is no mpiexec on PATH (install the mpich wheel: the dist extra)"
    if not os.path.isdir("/proc"):
        return "the MPI tests find the ranks to clean up through /proc (Linux)"
    return None


needs_mpi = pytest.mark.skipif(_mpi_missing() is not None, reason=str(_mpi_missing()))


def _descendants(pid):
    """Every process below ``pid`` (mpiexec -> hydra proxy -> ranks), read from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def mpirun(args, n=2, timeout=60, extra_env=None):
    """Run ``mpiexec -n n python ARGS`` from the repository; (returncode, stdout, stderr, seconds)."""
    return run_and_reap(["mpiexec", "-launcher", "fork", "-n", str(n), sys.executable] + args, timeout, extra_env)


def run_and_reap(command, timeout, extra_env=None):
    """Run ``command``; afterwards SIGKILL every process it left below it, by pid."""
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               **(extra_env or {}))
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        out, err = "", f"timed out after {timeout} s"
    finally:
        for pid in _descendants(process.pid) + [process.pid]:      # the ranks first, by their pids
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)
    return process.returncode, out, err, time.perf_counter() - start


def run_worker(out_dir, *flags, n=2, timeout=60):
    code, out, err, _ = mpirun([WORKER, str(out_dir), *flags], n=n, timeout=timeout)
    assert code == 0, f"mpiexec -n {n} worker failed ({code}):\n{out}\n{err}"
    return [dict(numpy.load(os.path.join(out_dir, f"rank{r}.npz"))) for r in range(n)]


def params_of(trainer):
    return {f"param/{name}": p.numpy() for name, p in trainer.model.named_parameters()}


def assert_close_to_one_process(rank, reference):
    """float32 tolerance: N ranks sum the gradient in another order than one process."""
    numpy.testing.assert_allclose(rank["losses"], reference.history["train_loss"], rtol=1e-5)
    numpy.testing.assert_allclose(rank["evals"], reference.history["evals"], rtol=1e-5)
    for key, value in params_of(reference).items():
        numpy.testing.assert_allclose(rank[key], value, rtol=1e-4, atol=1e-5, err_msg=key)


@needs_mpi
def test_two_ranks_of_half_the_batch_equal_one_process_and_stay_bit_identical(tmp_path):
    ranks = run_worker(tmp_path, "--skew-init")                      # equal only after the broadcast
    one = worker.make_trainer()
    one.run()
    params = [k for k in ranks[0] if k.startswith("param/")]
    assert int(ranks[0]["size"]) == 2 and len(params) == len(one.model.parameters())
    assert set(ranks[0]["rows"]) == set(ranks[1]["rows"]) == {2}    # each rank trains and evaluates on 4 / 2
    for key in params:                                               # the replicas never drift, not by a bit
        numpy.testing.assert_array_equal(ranks[0][key], ranks[1][key], err_msg=key)
    assert_close_to_one_process(ranks[0], one)
    moved = max(numpy.abs(ranks[0][k] - worker.make_trainer().model.state_dict()[k[6:]]).max() for k in params)
    assert moved > 1e-3                                              # training did change the weights


@needs_mpi
def test_one_checkpoint_resumes_under_another_number_of_ranks(tmp_path):
    one = worker.make_trainer()
    one.run()
    two_then_one = tmp_path / "two_then_one"
    ranks = run_worker(two_then_one, "--stop-at", "2")               # 2 ranks for 2 steps, then a checkpoint
    assert int(ranks[0]["saves"]) >= 1 and int(ranks[1]["saves"]) == 0     # rank 0 alone writes
    assert sorted(os.listdir(two_then_one)) == ["ckpt.npz", "rank0.npz", "rank1.npz"]
    resumed = worker.make_trainer(two_then_one, ckpt=checkpoint.load(two_then_one / "ckpt.npz"))
    assert resumed.step == 2
    resumed.run()                                                    # ... 1 process for the other 2
    assert_close_to_one_process({"losses": resumed.history["train_loss"], "evals": resumed.history["evals"],
                                 **params_of(resumed)}, one)
    one_then_two = tmp_path / "one_then_two"
    worker.make_trainer(one_then_two).run(stop_at=2)                 # and the other way round
    ranks = run_worker(one_then_two, "--resume")
    assert_close_to_one_process(ranks[1], one)


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "kill"])
def test_a_failing_rank_ends_the_whole_job_with_an_error(tmp_path, how):
    code, out, err, seconds = mpirun([WORKER, str(tmp_path), "--fail-rank", "1", "--fail-at", "2",
                                      "--how", how], timeout=60)
    assert "timed out" not in err and seconds < 60 and code != 0, (code, err)
    if how == "raise":
        assert "rank 1 failed; ending the job" in err and "injected failure on rank 1 at step 2" in err
    assert not os.path.exists(tmp_path / "rank0.npz")                # rank 0 did not finish either


@needs_mpi
def test_the_demo_trains_on_two_ranks_with_one_voice_and_one_checkpoint(tmp_path):
    text = tmp_path / "tiny.txt"
    with open(os.path.join(REPO, "minillm", "corpus", "shakespeare.txt"), encoding="utf-8") as f:
        text.write_text(f.read(6000), encoding="utf-8")
    flags = ["--data", str(text), "--out", str(tmp_path / "out"), "--iters", "4", "--eval-every", "2",
             "--eval-iters", "1", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
             "--sample-tokens", "0"]
    demo = os.path.join(REPO, "demos", "train_shakespeare.py")
    code, out, err, _ = mpirun([demo, *flags, "--batch-size", "4"], extra_env={"MINILLM_CHECK_REPLICAS": "1"})
    assert code == 0, err
    assert out.count("done: 4 iterations") == 1 and "2 ranks (mpi), 2 rows each" in out   # rank 0 alone prints
    assert sorted(os.listdir(tmp_path / "out")) == ["ckpt.npz", "loss.png"]
    code, out, err, _ = mpirun([demo, *flags, "--batch-size", "5"])
    assert code == 2 and out == ""
    assert err.strip().splitlines() == ["error: --batch-size 5 does not split over 2 ranks: use a multiple of 2 "
                                        "(it is the global batch; each rank takes batch_size / N rows)"]


@needs_mpi
def test_the_bench_times_one_and_two_ranks(tmp_path):
    code, out, err, _ = run_and_reap([sys.executable, os.path.join(REPO, "demos", "bench_ddp.py"), "--quick",
                                      "--n-layer", "1", "--n-embd", "32", "--block-size", "16"], timeout=120)
    assert code == 0, err
    rows = [line for line in out.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and "N = 2 here: alone, the all-reduce moves" in out
    assert out.count("GB/s | 512 |") == 4                   # two links x two models, at N = 512

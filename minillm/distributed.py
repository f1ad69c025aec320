"""Data parallelism: N processes, one replica of the model each, one averaged gradient.

    mpiexec -n 2 python demos/train_shakespeare.py --batch-size 12     # each rank: 6 of the 12 rows

Every rank holds the same parameters and draws the same global batch of B
rows from the one seeded stream; rank r keeps rows [r*B/N, (r+1)*B/N). After
its backward pass each rank has the gradient of the mean loss over its own
rows, g_r. The gradient of the mean over all B rows is the mean of the g_r
(equal shards: (1/B) sum_b = (1/N) sum_r (N/B) sum_{b in r}), so one
*all-reduce* (every rank ends with the sum of every rank's buffer) followed by
a division by N gives each rank the one-big-batch gradient. Each rank then
takes the same optimizer step, so the replicas stay identical without ever
sending a weight again. The result equals one process up to float summation
order; across ranks it is bit-identical.

The gradients travel as one flat buffer (``flatten``/``unflatten``): one
collective call for the whole model instead of one per parameter, which is
what makes the link's bandwidth, not its latency, the cost. (PyTorch's DDP
cuts this buffer into buckets so that the all-reduce of the last layers
overlaps the backward pass of the first; minillm's backward has no hooks to
overlap with, so one buffer is both the simplest and the fastest here.)

The engines, behind one interface (``World``):

- ``SingleProcess``: rank 0 of 1; every collective is a no-op. A run without
  ``mpiexec`` (or without mpi4py installed) trains exactly as before.
- ``MPIWorld``: MPI through mpi4py (the ``dist`` extra installs mpi4py and
  the MPICH wheel). Buffers are host arrays; on CuPy they are staged through
  the host.
- ``NCCLWorld``: NCCL through ``cupy.cuda.nccl``, reducing device buffers
  in place on the GPU, one process per GPU. MPI still starts the processes
  and hands every rank NCCL's unique id (the usual bootstrap).

``init()`` picks one from the environment that ``mpiexec`` sets; ``choose``
is that decision as a pure function. ``failures_end_the_job()`` turns an
exception on one rank into ``MPI_Abort`` for all: without it the failing rank
waits in MPI's cleanup while the others wait in the all-reduce, forever.

This is host-side orchestration: it talks to the communication libraries, and
moves the backend's arrays only through ``backend``.
"""
import contextlib
import hashlib
import os
import sys
import time
import traceback

import numpy

from minillm import backend

# How MPI launchers tell a process the size of its job: MPICH's and Intel MPI's
# Hydra (and Slurm's srun --mpi=pmi2) set PMI_SIZE, Open MPI's mpirun OMPI_COMM_WORLD_SIZE.
WORLD_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
ENGINES = ("single", "mpi", "nccl")
CHECK_VARIABLE = "MINILLM_CHECK_REPLICAS"        # "1": compare every rank's parameters after each step


def launched_world_size(environ=None):
    """The number of ranks a launcher started this job with (1 when run as a plain process)."""
    environ = os.environ if environ is None else environ
    for variable in WORLD_SIZE_VARIABLES:
        value = environ.get(variable, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def choose(world_size, backend_name, requested=None):
    """The engine for a job: "single" for one rank, else NCCL on CuPy and MPI on NumPy.

    ``requested`` ("mpi" or "nccl") overrides the choice for a multi-rank job.
    """
    if requested is not None and requested not in ENGINES:
        raise ValueError(f"unknown distributed engine {requested!r}: expected one of {ENGINES}")
    if world_size < 1:
        raise ValueError(f"world size must be >= 1, got {world_size}")
    if world_size == 1:
        return "single"
    if requested == "single":
        raise ValueError(f"engine 'single' cannot run a job of {world_size} ranks")
    if requested == "nccl" and backend_name != "cupy":
        raise ValueError("engine 'nccl' reduces GPU arrays: set MINILLM_BACKEND=cupy, or use 'mpi'")
    return requested or ("nccl" if backend_name == "cupy" else "mpi")


def shard_rows(batch_size, rank, world_size):
    """The slice of a global batch of ``batch_size`` rows that ``rank`` trains on."""
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} cannot be split evenly over {world_size} ranks: use a "
                         f"multiple of {world_size} (the batch size is global; each rank takes "
                         "batch_size / N rows)")
    rows = batch_size // world_size
    return slice(rank * rows, (rank + 1) * rows)


# ------------------------------------------------------------ the flat buffer

def flatten(arrays, tail=()):
    """One contiguous 1-D backend array: every array's elements in order, then the numbers ``tail``.

    All arrays must share one dtype (the buffer's); ``tail`` carries a few
    scalars (say, the loss) in the same collective call.
    """
    arrays = list(arrays)
    if not arrays:
        raise ValueError("flatten needs at least one array")
    dtype = arrays[0].dtype
    for i, array in enumerate(arrays):
        if array.dtype != dtype:
            raise TypeError(f"array {i} is {array.dtype}, array 0 is {dtype}: one flat buffer holds one dtype")
    pieces = [array.reshape(-1) for array in arrays] + [backend.asarray(list(tail), dtype=dtype)]
    return backend.xp.concatenate(pieces)                                 # (sum of sizes + len(tail),)


def unflatten(flat, shapes):
    """Views of ``flat`` with the given shapes (the inverse of ``flatten``), then the rest (the tail)."""
    sizes = [int(numpy.prod(shape, dtype=numpy.int64)) for shape in shapes]
    if sum(sizes) > flat.size:
        raise ValueError(f"the shapes need {sum(sizes)} elements, the buffer has {flat.size}")
    views, offset = [], 0
    for shape, size in zip(shapes, sizes):
        views.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return views, flat[offset:]


# ------------------------------------------------------------ what the ring costs

def ring_allreduce_seconds(nbytes, world_size, bandwidth, latency=0.0):
    """Time of a ring all-reduce of ``nbytes`` over ``world_size`` ranks (the textbook alpha-beta model).

    The buffer is cut into N chunks. N - 1 reduce-scatter steps (each rank sends
    one chunk to its right neighbour, which adds it in) leave each rank with one
    fully summed chunk; N - 1 all-gather steps pass the summed chunks round.
    Every rank sends 2 (N - 1) chunks of nbytes / N, in 2 (N - 1) messages:

        t = 2 (N - 1) / N * nbytes / bandwidth  +  2 (N - 1) * latency

    The bandwidth term tends to 2 * nbytes / bandwidth (independent of N); the
    latency term grows with N. ``bandwidth`` in bytes/s, ``latency`` in seconds.
    """
    if world_size < 1 or bandwidth <= 0:
        raise ValueError(f"need world_size >= 1 and bandwidth > 0, got {world_size} and {bandwidth}")
    steps = 2 * (world_size - 1)
    return steps / world_size * nbytes / bandwidth + steps * latency


def scaling_efficiency(step_seconds, comm_seconds):
    """Throughput of N ranks over N times one rank's, when the all-reduce does not overlap compute.

    Each rank computes its own rows for ``step_seconds`` (a fixed per-rank
    batch), then waits ``comm_seconds`` for the all-reduce: efficiency
    t / (t + c). With perfect overlap it would be t / max(t, c).
    """
    return step_seconds / (step_seconds + comm_seconds)


# ------------------------------------------------------------ the interface

class World:
    """A group of ``size`` ranks training one model; this process is ``rank``.

    Engines implement two collectives on a contiguous 1-D buffer, in place:
    ``_allreduce_sum`` (every rank ends with the elementwise sum over ranks) and
    ``_broadcast`` (every rank ends with rank 0's values); plus ``_allgather``
    of a small Python object. Everything else is written once here.
    """

    name = "single"
    rank, size = 0, 1

    def __init__(self, check_replicas=False):
        self.check_replicas = check_replicas
        self.comm_seconds = 0.0          # wall time spent in gradient all-reduces (for bench_ddp)
        self.comm_calls = 0

    # -- what training calls
    def shard(self, rows):
        """This rank's rows of a global batch (a host array, batch axis first)."""
        return rows[shard_rows(len(rows), self.rank, self.size)]

    def average_gradients(self, parameters, *scalars):
        """Replace every trainable parameter's ``.grad`` by its mean over ranks; return the mean ``scalars``.

        A parameter with no gradient on this rank counts as a zero gradient
        (and ends with the mean of the others'), so all ranks agree.
        """
        if self.size == 1:
            return list(scalars)
        params = [p for p in parameters if p.requires_grad]
        grads = [p.grad if p.grad is not None else backend.xp.zeros_like(p.data) for p in params]
        flat = flatten(grads, tail=scalars)                   # one buffer: every gradient, then the scalars
        start = time.perf_counter()
        self._allreduce_sum(flat)
        backend.synchronize()
        self.comm_seconds += time.perf_counter() - start
        self.comm_calls += 1
        flat /= self.size                                     # the sum over ranks -> the mean
        views, tail = unflatten(flat, [p.shape for p in params])
        for p, grad in zip(params, views):
            p.grad = grad
        return [float(value) for value in backend.to_numpy(tail)]

    def average(self, values):
        """The mean over ranks of a list of numbers (float64), e.g. evaluation losses."""
        if self.size == 1:
            return [float(v) for v in values]
        buffer = numpy.asarray(values, dtype=numpy.float64)
        self._allreduce_sum_host(buffer)
        return [float(v) for v in buffer / self.size]

    def broadcast_parameters(self, parameters):
        """Copy rank 0's parameter values to every rank (identical replicas at the start)."""
        if self.size == 1:
            return
        params = list(parameters)
        flat = flatten([p.data for p in params])
        self._broadcast(flat)
        views, _ = unflatten(flat, [p.shape for p in params])
        for p, value in zip(params, views):
            p.data[...] = value

    def assert_replicas_equal(self, parameters, step):
        """Debug mode: compare a hash of every rank's parameters; an error on every rank if they differ."""
        if self.size == 1:
            return
        digest = hashlib.sha256()
        for p in parameters:
            digest.update(numpy.ascontiguousarray(backend.to_numpy(p.data)).tobytes())
        digests = self._allgather(digest.hexdigest())
        differ = [r for r, d in enumerate(digests) if d != digests[0]]
        if differ:
            raise RuntimeError(f"after step {step} the parameters of rank(s) {differ} differ from rank 0's: "
                               "the replicas have drifted apart")

    # -- what engines provide
    def _allreduce_sum(self, buffer):
        raise NotImplementedError

    def _allreduce_sum_host(self, buffer):
        self._allreduce_sum(buffer)

    def _broadcast(self, buffer):
        raise NotImplementedError

    def _allgather(self, value):
        return [value]


class SingleProcess(World):
    """One process: rank 0 of 1. Nothing to communicate."""


class MPIWorld(World):
    """Ranks started by ``mpiexec``, talking over MPI (mpi4py)."""

    name = "mpi"

    def __init__(self, comm=None, check_replicas=False):
        super().__init__(check_replicas)
        from mpi4py import MPI           # here, so that a plain process never loads MPI
        self.MPI = MPI
        self.comm = MPI.COMM_WORLD if comm is None else comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()

    def _allreduce_sum(self, buffer):
        host = backend.to_numpy(buffer)              # the same array on NumPy; a copy off the GPU on CuPy
        self._allreduce_sum_host(host)
        if host is not buffer:
            buffer[...] = backend.asarray(host)

    def _allreduce_sum_host(self, buffer):
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def _broadcast(self, buffer):
        host = backend.to_numpy(buffer)
        self.comm.Bcast(host, root=0)
        if host is not buffer:
            buffer[...] = backend.asarray(host)

    def _allgather(self, value):
        return self.comm.allgather(value)


class NCCLWorld(MPIWorld):
    """One process per GPU; gradients all-reduced on the GPUs by NCCL (``cupy.cuda.nccl``).

    MPI starts the ranks, picks each rank's GPU (its rank among the ranks on
    the same node) and broadcasts NCCL's unique id; NCCL then moves the data
    (NVLink, PCIe, InfiniBand) without a copy through host memory.
    """

    name = "nccl"

    def __init__(self, comm=None, check_replicas=False):
        super().__init__(comm, check_replicas)
        import cupy
        from cupy.cuda import nccl
        if not nccl.available:
            raise ImportError("CuPy cannot load NCCL: install it (pip install nvidia-nccl-cu12 for CUDA 12), or "
                              "call distributed.init(engine='mpi') to all-reduce through host memory")
        self.cupy, self.nccl = cupy, nccl
        local_rank = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED).Get_rank()
        cupy.cuda.Device(local_rank % cupy.cuda.runtime.getDeviceCount()).use()
        unique_id = self.comm.bcast(nccl.get_unique_id() if self.rank == 0 else None, root=0)
        self.nccl_comm = nccl.NcclCommunicator(self.size, unique_id, self.rank)

    def _nccl_dtype(self, buffer):
        types = {"float16": self.nccl.NCCL_FLOAT16, "float32": self.nccl.NCCL_FLOAT32,
                 "float64": self.nccl.NCCL_FLOAT64}
        if buffer.dtype.name not in types:
            raise TypeError(f"NCCL all-reduce of {buffer.dtype} is not supported here; expected one of "
                            f"{sorted(types)}")
        return types[buffer.dtype.name]

    def _allreduce_sum(self, buffer):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.nccl_comm.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, self._nccl_dtype(buffer),
                                 self.nccl.NCCL_SUM, stream)      # send = receive buffer: in place

    def _broadcast(self, buffer):
        stream = self.cupy.cuda.get_current_stream().ptr
        self.nccl_comm.bcast(buffer.data.ptr, buffer.size, self._nccl_dtype(buffer), 0, stream)


def init(engine=None, check_replicas=None):
    """The ``World`` this process belongs to. Call it once, before building the model.

    ``engine`` ("mpi" or "nccl") overrides the choice ``choose`` makes;
    ``check_replicas`` defaults to the environment variable MINILLM_CHECK_REPLICAS=1.
    Launched by ``mpiexec -n N`` (N > 1) without mpi4py installed: an ImportError
    that names the extra, rather than N unrelated single-process runs.
    """
    if check_replicas is None:
        check_replicas = os.environ.get(CHECK_VARIABLE, "") not in ("", "0")
    size = launched_world_size()
    kind = choose(size, backend.name, engine)
    if kind == "single":
        return SingleProcess(check_replicas)
    try:
        import mpi4py  # noqa: F401  (only to say what is missing)
    except ImportError as error:
        raise ImportError(f"this process was started as one of {size} ranks, but mpi4py is not installed: "
                          "pip install -e \".[dist]\" (mpi4py and the MPICH wheel)") from error
    return NCCLWorld(check_replicas=check_replicas) if kind == "nccl" else MPIWorld(check_replicas=check_replicas)


@contextlib.contextmanager
def failures_end_the_job():
    """Around a rank's main: an uncaught exception prints its traceback and aborts every rank.

    ``sys.exit`` passes through: it is for errors every rank meets alike (a bad
    flag), which end every rank the same way without a collective.
    """
    try:
        yield
    except SystemExit:
        raise
    except BaseException:                                    # KeyboardInterrupt too
        if launched_world_size() == 1 or "mpi4py.MPI" not in sys.modules:
            raise
        from mpi4py import MPI
        rank = MPI.COMM_WORLD.Get_rank()
        sys.stderr.write(f"rank {rank} failed; ending the job:\n{traceback.format_exc()}")
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(1)

"""Pretraining: next-token prediction on raw text, by gradient descent on cross-entropy.

One iteration of ``Trainer.train_step``:

1. *Self-supervision*: ``get_batch`` cuts random windows out of the text; the
   targets are the inputs shifted by one token, so the text labels itself.
2. *Teacher forcing*: the model reads the true tokens x_0..x_t (never its own
   guesses) and predicts x_{t+1} at every position t at once: logits (B, T, V).
3. *Cross-entropy*: loss = mean over (b, t) of -log softmax(logits[b, t])[y[b, t]],
   the negative log-likelihood of the text (``F.cross_entropy``).
4. ``loss.backward()`` fills every parameter's ``.grad``; the global gradient
   norm is clipped; ``AdamW`` steps with the learning rate of a linear-warmup
   + cosine schedule. Only matrices and embeddings (>= 2 axes) decay.

Every ``eval_every`` iterations the train and validation losses are estimated
(the mean over ``eval_iters`` batches, under ``eval_mode(model)``: no dropout, no graph)
and a checkpoint is written (``checkpoint_every``, by default at each
evaluation). A checkpoint holds everything the run depends on: weights,
optimizer moments, the step, the configs, the tokenizer, the loss history and
the state of every random generator (batches and dropout), so a resumed run
draws exactly the batches and masks the uninterrupted run would have drawn and
ends with identical parameters (on NumPy).

Data parallel (``minillm.distributed``, under ``mpiexec -n N``): ``batch_size``
is the global batch. Every rank draws the same batch from the one seeded
stream and trains on its own ``batch_size / N`` rows; the gradients (and the
loss) are averaged over ranks before clipping, so every rank takes the same
step. Evaluation averages the ranks' losses; rank 0 alone prints and writes
checkpoints, which resume under any N.

A NaN or infinite loss stops the run before it touches the weights
(``TrainingDiverged``), leaving the last good checkpoint in place. Ctrl-C
writes a checkpoint of the last complete iteration, then re-raises.
"""
import contextlib
import dataclasses
import math
import os
import signal
import threading
import time
from typing import Optional

import numpy

from minillm import backend, checkpoint, distributed
from minillm import functional as F
from minillm.nn import eval_mode
from minillm.optim import AdamW, clip_grad_norm, cosine_lr, param_groups_for_weight_decay, set_lr
from minillm.progress import Progress
from minillm.batches import get_batch


class TrainingDiverged(RuntimeError):
    """The loss (or the gradient norm) became NaN or infinite."""


@dataclasses.dataclass
class TrainConfig:
    """How to train (the model's shape is its ``GPTConfig``). Defaults: nanoGPT's baby GPT.

    iters           total optimizer steps (a resumed run stops at the same total)
    batch_size      windows per micro-batch (global: N ranks take batch_size / N each);
                    grad_accum micro-batches make one step
    lr, min_lr      peak and final learning rate; warmup_iters of linear warmup,
                    then cosine decay until lr_decay_iters (default: iters;
                    warmup is cut to lr_decay_iters in a shorter run)
    weight_decay    AdamW's decoupled decay, on >= 2-D parameters only
    beta1, beta2    AdamW's moment decay rates
    grad_clip       clip the global gradient L2 norm to this (0: no clipping)
    eval_every      estimate train/val loss every this many iterations ...
    eval_iters      ... as the mean over this many batches
    checkpoint_every  write a checkpoint every this many iterations (None: at each
                    evaluation; 0: only at the end and on Ctrl-C)
    seed            seeds the batch generator (the model's seed is its own)
    log_every       progress line every this many iterations when not on a terminal
    """
    iters: int = 2000
    batch_size: int = 12
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_iters: int = 100
    lr_decay_iters: Optional[int] = None
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_iters: int = 20
    checkpoint_every: Optional[int] = None
    seed: int = 1337
    log_every: Optional[int] = None

    def __post_init__(self):
        for field in ("iters", "batch_size", "grad_accum", "eval_every", "eval_iters"):
            if not isinstance(getattr(self, field), int) or getattr(self, field) < 1:
                raise ValueError(f"{field} must be a positive integer, got {getattr(self, field)!r}")
        for field in ("warmup_iters", "checkpoint_every", "lr_decay_iters", "log_every"):
            value = getattr(self, field)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"{field} must be a non-negative integer, got {value!r}")
        for field in ("lr", "min_lr", "weight_decay", "grad_clip"):
            if not getattr(self, field) >= 0:
                raise ValueError(f"{field} must be >= 0, got {getattr(self, field)!r}")

    @property
    def decay_iters(self):
        return self.iters if self.lr_decay_iters is None else self.lr_decay_iters

    @property
    def save_every(self):
        return self.eval_every if self.checkpoint_every is None else self.checkpoint_every


@contextlib.contextmanager
def _interrupts_deferred():
    """Hold Ctrl-C until the block ends, so an optimizer update is never half applied."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)
    if received and callable(previous):
        previous(signal.SIGINT, None)              # the default handler raises KeyboardInterrupt


def with_auxiliary_loss(model, loss):
    """``loss`` plus the model's own training term, for a model that has one (Mixtral's
    ``auxiliary_loss()``: router_aux_loss_coef times the load-balancing loss of the forward pass
    just made). The reported loss stays the cross-entropy, comparable across families."""
    extra = model.auxiliary_loss() if hasattr(model, "auxiliary_loss") else None
    return loss if extra is None else loss + extra


def _generator_state(generator):
    """A NumPy generator's state (JSON-ready); None where the library keeps it out of reach (CuPy)."""
    try:
        return checkpoint.rng_state(generator)
    except (AttributeError, TypeError, NotImplementedError):
        return None


class Trainer:
    """Train ``model`` on the token ids ``train_ids``, validating on ``val_ids``.

        trainer = Trainer(model, train_ids, val_ids, TrainConfig(iters=500), tokenizer=tok,
                          out_dir="out/run")
        history = trainer.run()      # {"train_loss": [...], "evals": [[step, train, val], ...]}
    """

    def __init__(self, model, train_ids, val_ids, config=None, tokenizer=None, out_dir=None,
                 stream=None, extra=None, world=None):
        self.model, self.config = model, config or TrainConfig()
        self.tokenizer, self.stream, self.extra = tokenizer, stream, dict(extra or {})
        self.world = world or distributed.SingleProcess()
        distributed.shard_rows(self.config.batch_size, self.world.rank, self.world.size)  # divisible?
        if self.world.rank != 0:
            self.stream = open(os.devnull, "w")                # rank 0 alone prints
        self.world.broadcast_parameters(model.parameters())     # identical replicas from the start
        block = model.config.block_size
        self.train_ids = numpy.asarray(train_ids, dtype=numpy.int64)
        self.val_ids = numpy.asarray(val_ids, dtype=numpy.int64)
        for split, ids in (("training", self.train_ids), ("validation", self.val_ids)):
            if len(ids) < block + 1:
                raise ValueError(f"the {split} split has {len(ids)} tokens, fewer than block_size + 1 = "
                                 f"{block + 1}: use more text or a smaller block_size")
        cfg = self.config
        self.optimizer = AdamW(param_groups_for_weight_decay(model, cfg.weight_decay), lr=cfg.lr,
                               betas=(cfg.beta1, cfg.beta2), weight_decay=cfg.weight_decay)
        self.batch_rng = numpy.random.default_rng(cfg.seed)   # the one stream of training batches
        self.step = 0                                          # optimizer steps done
        self.history = {"train_loss": [], "evals": []}
        self.ckpt_path = None if out_dir is None else os.path.join(out_dir, "ckpt.npz")
        self.last_checkpoint_step = None
        self._rng_snapshot = None          # generator states at the start of the current iteration

    # ----------------------------------------------------------- one iteration
    def lr_at(self, step):
        cfg = self.config
        warmup = min(cfg.warmup_iters, cfg.decay_iters)           # a run shorter than its warmup
        return cosine_lr(step, cfg.lr, cfg.min_lr, warmup, cfg.decay_iters)

    def train_step(self):
        """One optimizer step on ``grad_accum`` fresh batches; returns (mean loss, lr)."""
        cfg, model = self.config, self.model
        lr = self.lr_at(self.step)
        set_lr(self.optimizer, lr)
        self.optimizer.zero_grad()
        total = 0.0
        for _ in range(cfg.grad_accum):
            x, y = get_batch(self.train_ids, cfg.batch_size, model.config.block_size, self.batch_rng)
            x, y = self.world.shard(x), self.world.shard(y)        # this rank's B/N rows of the global batch
            x, y = backend.asarray(x), backend.asarray(y)          # (B/N, T) inputs, (B/N, T) next tokens
            logits = model(x)                                      # (B/N, T, V) teacher forcing
            loss = F.cross_entropy(logits, y)                      # mean -log p(next token)
            objective = with_auxiliary_loss(model, loss)           # + Mixtral's load balancing, if any
            (objective if cfg.grad_accum == 1 else objective * (1.0 / cfg.grad_accum)).backward()
            total += float(loss.data)
        loss, = self.world.average_gradients(model.parameters(), total / cfg.grad_accum)   # mean over ranks
        if not math.isfinite(loss):
            self._diverged(f"the loss is {loss}", lr)
        if cfg.grad_clip > 0:
            norm = clip_grad_norm(model.parameters(), cfg.grad_clip)
            if not math.isfinite(norm):
                self._diverged(f"the gradient norm is {norm}", lr)
        with _interrupts_deferred():       # from here the update and its bookkeeping happen as one
            self.optimizer.step()
            self.optimizer.zero_grad()     # the graph and the gradients go: memory stays flat
            self.step += 1
            self.history["train_loss"].append(loss)
            self._rng_snapshot = None
        if self.world.check_replicas:
            self.world.assert_replicas_equal(model.parameters(), self.step)
        return loss, lr

    def _diverged(self, what, lr):
        self.optimizer.zero_grad()
        kept = (f"the last good checkpoint, {self.ckpt_path} (iteration {self.last_checkpoint_step}), "
                "is kept" if self.last_checkpoint_step is not None else "no checkpoint was written")
        raise TrainingDiverged(f"{what} at iteration {self.step + 1} (lr {lr:.3g}): training stopped "
                               f"before updating the weights; {kept}. Try a lower lr, a smaller "
                               "grad_clip or more warmup_iters.")

    # ----------------------------------------------------------- evaluation
    def estimate_loss(self, ids, seed):
        """Mean cross-entropy over ``eval_iters`` batches of ``ids`` (the same batches each time)."""
        cfg, model = self.config, self.model
        rng = numpy.random.default_rng(seed)
        losses = []
        with eval_mode(model):                                     # dropout off, no graph
            for _ in range(cfg.eval_iters):
                x, y = get_batch(ids, cfg.batch_size, model.config.block_size, rng)
                x, y = self.world.shard(x), self.world.shard(y)   # (B/N, T) this rank's rows
                logits = model(backend.asarray(x))                 # (B/N, T, V)
                losses.append(float(F.cross_entropy(logits, backend.asarray(y)).data))
        return float(numpy.mean(self.world.average(losses)))     # the mean over ranks of each batch

    def evaluate(self):
        """Estimate (train loss, val loss) now and add them to the history."""
        seed = self.config.seed
        train = self.estimate_loss(self.train_ids, (seed, 1))
        val = self.estimate_loss(self.val_ids, (seed, 2))
        self.history["evals"].append([self.step, train, val])
        return train, val

    # ----------------------------------------------------------- checkpoints
    def rng_states(self):
        return {"batch": checkpoint.rng_state(self.batch_rng),
                "dropout": [_generator_state(g) for g in self.model.generators()]}

    def save_checkpoint(self, rng_states=None):
        """Write everything this run depends on to ``out_dir/ckpt.npz`` (atomically)."""
        if self.ckpt_path is None:
            return None
        if self.world.rank == 0:                                   # one writer; the replicas are identical
            checkpoint.save(self.ckpt_path, self.model, self.optimizer, step=self.step,
                            train_config=dataclasses.asdict(self.config), tokenizer=self.tokenizer,
                            rng=rng_states or self.rng_states(), history=self.history, **self.extra)
        self.last_checkpoint_step = self.step
        return self.ckpt_path

    def load_state(self, ckpt):
        """Continue from a loaded checkpoint (``checkpoint.load``): weights, moments, step, generators."""
        mine = dataclasses.asdict(self.model.config)
        if ckpt["config"] != mine:
            raise ValueError(f"the checkpoint's model config {ckpt['config']} differs from this model's {mine}")
        self.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.batch_rng.bit_generator.state = ckpt["rng"]["batch"]
        generators, states = self.model.generators(), ckpt["rng"]["dropout"]
        if len(generators) != len(states):
            raise ValueError(f"the checkpoint has {len(states)} dropout generator states, "
                             f"this model {len(generators)}")
        for generator, state in zip(generators, states):
            if state is not None:
                generator.bit_generator.state = state
        self.step = int(ckpt["step"])
        self.history = {"train_loss": list(ckpt["history"]["train_loss"]),
                        "evals": [list(e) for e in ckpt["history"]["evals"]]}
        self.last_checkpoint_step = self.step
        return self

    @classmethod
    def from_checkpoint(cls, ckpt, train_ids, val_ids, iters=None, model_class=None, **kwargs):
        """A fresh model (of the family ``ckpt`` records, unless ``model_class`` says which),
        optimizer and generators in the state of ``ckpt``; ``iters`` may extend the run."""
        from minillm.models import decoder_from_checkpoint   # here: the loop itself works with any such model

        config = TrainConfig(**ckpt["train_config"])
        if iters is not None:
            config = dataclasses.replace(config, iters=iters)
        model = (model_class.from_checkpoint(ckpt, seed=config.seed) if model_class is not None
                 else decoder_from_checkpoint(ckpt, seed=config.seed))
        kwargs.setdefault("tokenizer", ckpt.get("tokenizer"))
        return cls(model, train_ids, val_ids, config, **kwargs).load_state(ckpt)

    # ----------------------------------------------------------- the loop
    def run(self, stop_at=None):
        """Train until ``config.iters`` steps are done; returns the history.

        ``stop_at`` pauses earlier, after that many steps (with a checkpoint), as
        if the run had been interrupted there: the schedule still aims at ``iters``.
        """
        cfg = self.config
        stop_at = cfg.iters if stop_at is None else min(stop_at, cfg.iters)
        progress = Progress(cfg.iters, start=self.step, stream=self.stream, every=cfg.log_every)
        self._rng_snapshot = None
        try:
            if self.step == 0 and not self.history["evals"]:
                self._report(progress, *self.evaluate())
            while self.step < stop_at:
                self._rng_snapshot = self.rng_states()
                start = time.perf_counter()
                loss, lr = self.train_step()
                backend.synchronize()
                progress.update(self.step, loss, lr, time.perf_counter() - start)
                done = self.step == cfg.iters
                if self.step % cfg.eval_every == 0 or done:
                    self._report(progress, *self.evaluate())
                if (cfg.save_every and self.step % cfg.save_every == 0) or done or self.step == stop_at:
                    self.save_checkpoint()
        except KeyboardInterrupt:
            progress.close()
            if self.ckpt_path is not None:
                self.save_checkpoint(self._rng_snapshot)
                progress.message(f"interrupted after iteration {self.step}: saved {self.ckpt_path}")
            raise
        finally:
            progress.close()
        return self.history

    def _report(self, progress, train, val):
        progress.message(f"step {self.step}: train loss {train:.4f}, val loss {val:.4f}")

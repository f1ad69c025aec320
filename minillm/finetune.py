"""Finetuning a pretrained GPT: the four things the word means.

1. **Continued pretraining**: the same next-token loss, on text of a new
   domain, starting from the pretrained weights (``continued_pretraining``:
   the ``Trainer`` with a model that already knows something).
2. **Parameter-efficient finetuning (PEFT)**: freeze most weights and train a
   few: ``minillm.lora.apply_lora`` (h = x W + x A B, W frozen), or set
   ``requires_grad = False`` by hand. The optimizers skip frozen parameters
   and keep no state for them.
3. **Supervised finetuning (SFT)** on (prompt, response) pairs. Each pair is
   written with a template, e.g. "Q: {prompt}\\nA: " + response + "\\n", and
   trained with teacher forcing, but the loss counts only the response tokens:
   the targets of prompt tokens are ``ignore_index`` (-100), so they add
   nothing to the loss or the gradient (``train_on_prompt=True`` counts them).
   With gradient accumulation over micro-batches the loss is normalised by the
   total number of counted tokens N = sum_i n_i of all micro-batches,

       L = (1 / N) sum_i sum_{t counted in i} -log p(y_t)  =  sum_i (n_i / N) mean_i,

   so each counted token weighs the same as in one big batch (averaging the
   micro-batch means would overweight short responses). A batch with no
   counted token has loss 0 and makes no update.
4. **An extra head** for classification: the last hidden state (after ln_f,
   at the last real token of each row) -> Linear(C, K) -> K class logits,
   trained with cross-entropy, the body frozen or not (``GPTClassifier``).
"""
import math

import numpy

from minillm import backend, checkpoint
from minillm import functional as F
from minillm.backend import xp
from minillm.nn import Linear, Module, eval_mode
from minillm.optim import clip_grad_norm
from minillm.tokenizers import tokenizer_from_dict

IGNORE_INDEX = -100


# ---------------------------------------------------------------- base models

def load_pretrained(path):
    """(model, tokenizer) from a checkpoint written by the Trainer (``checkpoint.save``)."""
    ckpt = checkpoint.load(path)
    model, _ = checkpoint.restore(ckpt)
    tok = ckpt.get("tokenizer")
    return model, (tokenizer_from_dict(tok) if isinstance(tok, dict) else None)


def hidden_states(model, idx):
    """The GPT's final hidden states ln_f(x_L), a Tensor (B, T, C), for token ids ``idx`` (B, T):
    the forward pass without the output layer (``GPT.hidden_states``)."""
    return model.hidden_states(idx)


def continued_pretraining(model, train_ids, val_ids, config=None, **trainer_kwargs):
    """Keep pretraining ``model`` on new-domain token ids; returns the finished ``Trainer``.

    It is the pretraining loop itself (``minillm.train.Trainer``): only the
    starting weights differ. Frozen parameters (e.g. after ``apply_lora``) are
    left out of the optimizer, so the same call does LoRA domain adaptation.
    """
    from minillm.train import Trainer  # here: finetune's other tools do not need the loop

    trainer = Trainer(model, train_ids, val_ids, config, **trainer_kwargs)
    trainer.run()
    return trainer


def pretrain_base(train_ids, val_ids, model_config, train_config, seed=0, **trainer_kwargs):
    """A GPT pretrained from scratch on ``train_ids`` (for demos without a checkpoint)."""
    from minillm.models import GPT

    model = GPT(model_config, seed=seed)
    continued_pretraining(model, train_ids, val_ids, train_config, **trainer_kwargs)
    return model


# ---------------------------------------------------------------- supervised finetuning

class SFTDataset:
    """(prompt, response) pairs, tokenised with a template, ready to batch.

    The text of a pair is ``template.format(prompt=prompt) + response + end``.
    Its ids x_0 .. x_n give inputs x_0 .. x_{n-1} and targets x_1 .. x_n; the
    targets that are prompt tokens (the first P - 1, P = prompt length) become
    ``ignore_index`` unless ``train_on_prompt``.
    """

    def __init__(self, pairs, tokenizer, template="Q: {prompt}\nA: ", end="\n", train_on_prompt=False,
                 block_size=None, ignore_index=IGNORE_INDEX):
        self.tokenizer, self.template, self.end = tokenizer, template, end
        self.train_on_prompt, self.ignore_index = bool(train_on_prompt), ignore_index
        self.pairs = [(str(p), str(r)) for p, r in pairs]
        if not self.pairs:
            raise ValueError("an SFT dataset needs at least one (prompt, response) pair")
        self.examples = []  # (inputs, targets) int64 host arrays, each (n,)
        for i, (prompt, response) in enumerate(self.pairs):
            inputs, targets = self.encode(prompt, response)
            if block_size is not None and len(inputs) > block_size:
                raise ValueError(f"example {i} has {len(inputs)} input tokens, more than block_size "
                                 f"{block_size}: shorten it or use a larger block_size")
            self.examples.append((inputs, targets))

    def prompt_text(self, prompt):
        return self.template.format(prompt=prompt)

    def encode(self, prompt, response):
        """(inputs, targets) for one pair: int64 host arrays of the same length."""
        prompt_ids = list(self.tokenizer.encode(self.prompt_text(prompt)))
        response_ids = list(self.tokenizer.encode(response + self.end))
        if not prompt_ids or not response_ids:
            raise ValueError(f"prompt {prompt!r} and response {response!r} must each encode to at least one token")
        ids = numpy.array(prompt_ids + response_ids, dtype=numpy.int64)
        inputs, targets = ids[:-1], ids[1:].copy()                        # teacher forcing
        if not self.train_on_prompt:
            targets[:len(prompt_ids) - 1] = self.ignore_index             # target j is token j+1
        return inputs, targets

    def __len__(self):
        return len(self.examples)

    def batch(self, indices, pad_id=0):
        """``collate`` of the examples at ``indices``."""
        return collate([self.examples[i] for i in indices], pad_id, self.ignore_index)

    def batches(self, batch_size, rng):
        """One epoch of shuffled batches (the last may be smaller); ``rng`` a numpy Generator."""
        order = rng.permutation(len(self.examples))
        for start in range(0, len(order), batch_size):
            yield self.batch(order[start:start + batch_size])


def collate(examples, pad_id=0, ignore_index=IGNORE_INDEX):
    """Pad (inputs, targets) pairs on the right to one (B, T_max) batch.

    Padded inputs are ``pad_id`` (any valid id: they sit after the real tokens,
    so causal attention never lets a real position see them) and padded
    targets ``ignore_index``. Returns (inputs, targets) int64 host arrays.
    """
    if not examples:
        raise ValueError("collate needs at least one example")
    T = max(len(x) for x, _ in examples)
    inputs = numpy.full((len(examples), T), pad_id, dtype=numpy.int64)        # (B, T)
    targets = numpy.full((len(examples), T), ignore_index, dtype=numpy.int64)  # (B, T)
    for row, (x, y) in enumerate(examples):
        inputs[row, :len(x)], targets[row, :len(y)] = x, y
    return inputs, targets


def counted_tokens(targets, ignore_index=IGNORE_INDEX):
    """How many targets count in the loss (are not ``ignore_index``)."""
    return int((numpy.asarray(backend.to_numpy(targets)) != ignore_index).sum())


def masked_loss(model, inputs, targets, ignore_index=IGNORE_INDEX):
    """Mean cross-entropy over the counted targets (a Tensor; 0 with zero gradient if none count)."""
    logits = model(backend.asarray(inputs))                                  # (B, T, V)
    return F.cross_entropy(logits, backend.asarray(targets), ignore_index=ignore_index)


def sft_step(model, optimizer, micro_batches, grad_clip=1.0, ignore_index=IGNORE_INDEX):
    """One optimizer step over ``micro_batches`` [(inputs, targets), ...]; returns (loss, N).

    Each micro-batch's mean loss is weighted by n_i / N, N the counted tokens of
    all micro-batches together, so the gradient is that of one big batch. With
    N = 0 nothing is computed or updated and the loss is 0.
    """
    micro_batches = list(micro_batches)
    counts = [counted_tokens(y, ignore_index) for _, y in micro_batches]
    total = sum(counts)
    optimizer.zero_grad()
    if total == 0:
        return 0.0, 0
    loss_value = 0.0
    for (x, y), n in zip(micro_batches, counts):
        if n == 0:
            continue
        loss = masked_loss(model, x, y, ignore_index)                        # mean over this micro-batch
        (loss * (n / total)).backward()
        loss_value += float(loss.data) * n / total
    if not math.isfinite(loss_value):
        optimizer.zero_grad()
        raise FloatingPointError(f"the SFT loss is {loss_value}: lower the learning rate")
    if grad_clip:
        clip_grad_norm([p for p in model.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return loss_value, total


def generate_response(model, tokenizer, prompt_text, max_new_tokens, end="\n"):
    """Greedy continuation of ``prompt_text`` until ``end`` (one token) or ``max_new_tokens``.

    Returns the generated text without ``end``.
    """
    ids = xp.asarray(numpy.array([tokenizer.encode(prompt_text)], dtype=numpy.int64))  # (1, P)
    stop = tokenizer.encode(end)
    out = model.generate(ids, max_new_tokens, temperature=0.0, stop=stop[0] if len(stop) == 1 else None)  # eval mode
    text = tokenizer.decode(backend.to_numpy(out)[0, ids.shape[1]:].tolist())
    return text.split(end)[0] if end else text


def exact_match(model, dataset, pairs, max_new_tokens):
    """Fraction of (prompt, response) pairs whose greedy answer equals the response exactly."""
    hits = 0
    for prompt, response in pairs:
        answer = generate_response(model, dataset.tokenizer, dataset.prompt_text(prompt), max_new_tokens,
                                   dataset.end)
        hits += answer == response
    return hits / len(pairs)


# ---------------------------------------------------------------- classification head

class GPTClassifier(Module):
    """logits = ln_f(GPT(x))[last real token] W_head + b_head: an extra head of K classes.

    body         a GPT (its output layer is not used)
    n_classes    K
    freeze_body  True: only the head trains (``requires_grad = False`` on the body)
    pooling      "last": the hidden state of the last real token (it has seen the whole
                 passage: the course's choice, and GPT-2's for classification); "mean": the
                 mean over the real tokens' hidden states (every position's features count)
    Parameters are named ``body.<GPT-2 name>`` and ``head.weight`` (C, K), ``head.bias`` (K,).
    """

    def __init__(self, body, n_classes, freeze_body=True, seed=0, pooling="last"):
        super().__init__()
        if isinstance(n_classes, bool) or int(n_classes) != n_classes or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        if pooling not in ("last", "mean"):
            raise ValueError(f"pooling must be 'last' or 'mean', got {pooling!r}")
        self.pooling = pooling
        self.config = body.config
        self.body = body
        self.head = Linear(body.config.n_embd, int(n_classes), rng=seed, std=0.02, dtype=body.config.dtype)
        if freeze_body:
            for p in body.parameters():
                p.requires_grad = False

    def forward(self, idx, lengths=None):
        """Class logits (B, K); ``lengths`` (B,) marks each row's real tokens (right padding)."""
        h = hidden_states(self.body, idx)                                    # (B, T, C)
        B, T, _ = h.shape
        last = numpy.full(B, T - 1) if lengths is None else numpy.asarray(backend.to_numpy(lengths)) - 1
        if last.shape != (B,) or (last < 0).any() or (last >= T).any():
            raise ValueError(f"lengths must be {B} values in [1, {T}], got {(last + 1).tolist()}")
        if self.pooling == "last":
            pooled = h[xp.arange(B), xp.asarray(last)]                       # (B, C) last real token
        else:
            real = numpy.arange(T)[None, :] <= last[:, None]                 # (B, T) real tokens
            weights = real / real.sum(axis=1, keepdims=True)                 # (B, T) 1/length on each
            pooled = (h * backend.asarray(weights[:, :, None], dtype=h.dtype)).sum(axis=1)  # (B, C)
        return self.head(pooled)                                             # (B, K)


def pad_batch(sequences, pad_id=0):
    """Right-pad token-id lists to (B, T_max); returns (ids int64 (B, T), lengths (B,))."""
    lengths = numpy.array([len(s) for s in sequences], dtype=numpy.int64)
    if len(lengths) == 0 or lengths.min() < 1:
        raise ValueError("pad_batch needs at least one sequence, each of at least one token")
    ids = numpy.full((len(sequences), int(lengths.max())), pad_id, dtype=numpy.int64)
    for row, s in enumerate(sequences):
        ids[row, :len(s)] = s
    return ids, lengths


def classifier_step(classifier, optimizer, ids, lengths, labels, grad_clip=1.0):
    """One step of cross-entropy on class labels (B,); returns the loss (a float)."""
    optimizer.zero_grad()
    logits = classifier(ids, lengths)                                        # (B, K)
    loss = F.cross_entropy(logits, backend.asarray(numpy.asarray(labels, dtype=numpy.int64)))
    loss.backward()
    if grad_clip:
        clip_grad_norm([p for p in classifier.parameters() if p.requires_grad], grad_clip)
    optimizer.step()
    optimizer.zero_grad()
    return float(loss.data)


def predict_classes(classifier, ids, lengths=None, batch_size=64):
    """Predicted class index per row (host int64 array), in eval mode without a graph."""
    out = []
    with eval_mode(classifier):
        for start in range(0, len(ids), batch_size):
            chunk = None if lengths is None else lengths[start:start + batch_size]
            logits = classifier(ids[start:start + batch_size], chunk)        # (b, K)
            out.append(backend.to_numpy(logits.data).argmax(axis=-1))
    return numpy.concatenate(out)

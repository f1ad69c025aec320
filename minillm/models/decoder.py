"""What every decoder-only language model does around its own layers (GPT-2, Llama, Mixtral).

A family writes two methods; ``DecoderLM`` supplies the rest:

    hidden_states(idx, cache)    token ids (B, T) -> the final hidden states (B, T, C)
    output(x)                    hidden states (B, T, C) -> logits (B, T, V): the lm_head

    logits = model(idx)                          (B, T, V)
    logits, loss = model(idx, targets)           teacher forcing: mean cross-entropy
    model(idx, cache=cache, last_only=True)      inference: new tokens only, last logits (B, 1, V)
    model.generate(idx, max_new_tokens, ...)     minillm.generation's loop

The config must have ``vocab_size``, ``block_size`` (the longest sequence) and
``n_layer`` (the KV cache holds one entry per layer); ``config_class`` names
its dataclass, so that ``from_checkpoint`` can rebuild it.
"""
import os

from minillm import functional as F
from minillm import safe_io
from minillm.autograd import Tensor, is_grad_enabled
from minillm.backend import xp
from minillm.nn import Module, skip_init
from minillm.shapes import shape_text


class DecoderLM(Module):
    """The shared outer loop of a decoder-only model. Subclasses define ``hidden_states`` and ``output``."""

    def hidden_states(self, idx, cache=None):
        raise NotImplementedError(f"{type(self).__name__} must define hidden_states(idx, cache)")

    def output(self, x):
        raise NotImplementedError(f"{type(self).__name__} must define output(x) -> logits")

    def start(self, cache):
        """The position of the first new token: 0, or the number of cached tokens (inference only)."""
        if cache is None:
            return 0
        if is_grad_enabled():
            raise RuntimeError("the KV-cache path is for inference: call the model under minillm.no_grad()")
        return cache.position

    def check_idx(self, idx, start=0):
        """idx as a backend int array (B, T) that fits after ``start`` tokens, or a clear error."""
        if isinstance(idx, Tensor):
            idx = idx.data
        idx = xp.asarray(idx)
        if idx.ndim != 2:
            raise ValueError(f"idx must be a 2-D array (batch, time) of token ids, got shape {shape_text(idx.shape)}")
        T = idx.shape[1]
        if T == 0:
            raise ValueError("idx has no tokens (sequence length 0)")
        if start + T > self.config.block_size:
            where = f" after {start} cached tokens" if start else ""
            raise ValueError(f"sequence length {start + T}{where} exceeds block_size {self.config.block_size}")
        F.check_token_ids(idx, self.config.vocab_size)
        return idx

    def forward(self, idx, targets=None, cache=None, last_only=False):
        """Logits (B, T, V) for the token ids ``idx`` (B, T); with ``targets``, (logits, loss).

        ``cache`` (a ``KVCache``): ``idx`` holds only the new tokens, which
        attend to every cached one. ``last_only=True`` (for generation)
        returns only the last position's logits (B, 1, V): the output layer is
        the largest matrix product for a big vocabulary, and decoding needs
        just that row.
        """
        if last_only and targets is not None:
            raise ValueError("last_only=True gives one position's logits; it cannot score targets")
        x = self.hidden_states(idx, cache)                               # (B, T, C)
        if last_only:
            x = x[:, -1:, :]                                             # (B, 1, C)
        logits = self.output(x)                                          # (B, T, V)
        if targets is None:
            return logits
        return logits, F.cross_entropy(logits, targets)

    layer_prefix = "h."    # the blocks' parameter names: "h.0.", "h.1.", ... (check_state counts them)

    @staticmethod
    def parameter_shapes(config):
        """{parameter name: shape} of the model ``config`` describes, from the config alone
        (tuples, no arrays), in ``named_parameters`` order. Each family defines it."""
        raise NotImplementedError("a DecoderLM family must define parameter_shapes(config)")

    @classmethod
    def check_state(cls, config, state, where):
        """Refuse arrays that a model with ``config`` cannot take, before the model is built:
        the config comes from the same untrusted file, and an n_layer of 10**6 or a
        vocab_size of 3 * 10**7 over tiny arrays would allocate gigabytes first. The layer
        count against the blocks present (one pass over the names, before a list of
        n_layer names is made), then every name and shape against ``parameter_shapes``,
        dtypes and finite values (``safe_io.check_arrays``)."""
        safe_io.check_layer_count(state, cls.layer_prefix, config.n_layer, where)
        safe_io.check_arrays(state, cls.parameter_shapes(config), where,
                             f"a {cls.__name__} with n_layer={config.n_layer}")

    @classmethod
    def from_checkpoint(cls, path, seed=0, where=None):
        """A model with the config and weights of a training checkpoint: the file
        ``checkpoint.save`` wrote, or the dict ``checkpoint.load`` returned.
        ``seed`` seeds the dropout stream (a resumed run restores its state).
        The arrays are checked against the config first (``check_state``);
        errors name ``where`` (default: the file, or "checkpoint")."""
        from minillm import checkpoint   # a layer above the model: imported when used
        ckpt = path if isinstance(path, dict) else checkpoint.load(path)
        where = where or ("checkpoint" if isinstance(path, dict) else f"checkpoint {os.fspath(path)}")
        try:
            config = cls.config_class.from_dict(ckpt["config"])
        except (TypeError, ValueError) as error:
            raise ValueError(f"{where}: its config is not a {cls.__name__}'s: {error}") from None
        cls.check_state(config, ckpt["model"], where)     # before cls(config) allocates anything
        with skip_init():                                  # every weight is overwritten next
            model = cls(config, seed=seed)
        model.load_state_dict(ckpt["model"])
        return model

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None,
                 use_cache=True, stop=None, slide_keep=None):
        """Continue ``idx`` (B, T) by ``max_new_tokens`` sampled tokens -> (B, T + new).

        Thin hook: the decoding loop (and its documentation) is ``minillm.generation.generate``,
        imported here because decoding is a layer above the model.
        """
        from minillm.generation import generate
        return generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed, use_cache=use_cache, stop=stop, slide_keep=slide_keep)

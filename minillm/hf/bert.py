"""The BERT converter: Hugging Face BERT folders <-> ``minillm.models.Bert``.

Folders read (config.json "model_type": "bert"):

    BertForMaskedLM                  bert.embeddings.*, bert.encoder.*, cls.predictions.*
    BertModel                        embeddings.*, encoder.*, pooler.* (no prefix, no MLM head)
    BertForSequenceClassification    bert.* with bert.pooler.*, classifier.*
    BertForPreTraining (the hub's bert-base-uncased file)   also cls.seq_relationship.* (skipped)

minillm's names are the same without the "bert." prefix. The embeddings and
encoder must be in the file; the pooler, the MLM head and the classifier are
read when present and otherwise keep their initial values (HF does the same
when it builds a head the file lacks). Skipped: ``cls.predictions.decoder.weight``
(tied to the word embeddings: it must be equal), ``cls.predictions.decoder.bias``
(the same tensor as ``cls.predictions.bias``), the NSP head
``cls.seq_relationship.*`` and the ``position_ids`` buffer. Old checkpoints
name LayerNorm parameters ``gamma``/``beta``; they are read as ``weight``/``bias``.

Layout: BERT's projections are PyTorch ``nn.Linear`` modules, whose weight is
(out, in); minillm's Linear is (in, out), so every 2-D weight outside the
embedding tables is transposed, both ways.

``save`` writes every parameter (pooler, MLM head and classifier included)
under the prefixed names, with "architectures" ``BertForMaskedLM`` (or
``BertForSequenceClassification`` when the model has a classifier); with
``architecture="BertModel"`` it writes only the encoder, unprefixed. (transformers'
``BertForMaskedLM`` has no pooler: it lists ``bert.pooler.*`` as unexpected and
ignores them; they are written so that minillm's own round trip loses nothing.)

Only BERT's own architecture is accepted: hidden_act "gelu" (the erf form),
absolute positions, an encoder (not a decoder, no cross-attention), the MLM
decoder tied to the word embeddings. Anything else is a ValueError naming the key.
"""
import numpy as np

from minillm import backend, safe_io
from minillm.hf import files
from minillm.models.bert import Bert, BertConfig

MODEL_CLASS = Bert
MODEL_TYPE = "bert"
ARCHITECTURES = ("BertForMaskedLM", "BertModel", "BertForSequenceClassification", "BertForPreTraining")
_CONFIG_KEYS = (  # (config.json key, BertConfig field)
    ("vocab_size", "vocab_size"), ("max_position_embeddings", "max_position_embeddings"),
    ("num_hidden_layers", "n_layer"), ("num_attention_heads", "n_head"), ("hidden_size", "n_embd"),
    ("intermediate_size", "n_inner"), ("type_vocab_size", "type_vocab_size"),
    ("layer_norm_eps", "layer_norm_eps"), ("hidden_dropout_prob", "dropout"),
    ("attention_probs_dropout_prob", "attention_dropout"), ("pad_token_id", "pad_token_id"),
)
_REQUIRED = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size")
_SKIPPED = ("cls.predictions.decoder.bias", "cls.seq_relationship.weight", "cls.seq_relationship.bias",
            "embeddings.position_ids")
_OPTIONAL = ("pooler.", "cls.", "classifier.")  # heads a folder may lack


# --- config.json -------------------------------------------------------------

def config_from_hf(hf, path=files.CONFIG_NAME):
    """BERT config.json dict -> BertConfig keyword dict (without num_labels and dtype)."""
    if hf.get("model_type") != MODEL_TYPE:
        raise ValueError(f"{path} describes model_type {hf.get('model_type')!r} (architectures "
                         f"{hf.get('architectures')}); this converter reads only BERT (model_type 'bert')")
    missing = [k for k in _REQUIRED if k not in hf]
    if missing:
        raise ValueError(f"{path} is missing the BERT key(s) {missing}")
    checks = (  # (key, default, supported?, what minillm needs)
        ("hidden_act", "gelu", lambda v: v == "gelu", "'gelu' (the exact erf GELU)"),
        ("position_embedding_type", "absolute", lambda v: v == "absolute", "'absolute'"),
        ("is_decoder", False, lambda v: v is False, "false (an encoder)"),
        ("add_cross_attention", False, lambda v: v is False, "false"),
        ("tie_word_embeddings", True, lambda v: v is True, "true (decoder tied to the word embeddings)"),
    )
    for key, default, ok, wanted in checks:
        value = hf.get(key, default)
        if not ok(value):
            raise ValueError(f"{path}: {key} = {value!r} is not supported; minillm's BERT needs {wanted}")
    config = {field: hf[key] for key, field in _CONFIG_KEYS if hf.get(key) is not None}
    try:
        BertConfig(**config)  # validates sizes and divisibility with errors naming our field
    except (TypeError, ValueError) as e:
        raise ValueError(f"{path}: {e}") from None
    return config


def config_to_hf(config, architecture):
    """BertConfig -> config.json dict (the keys transformers writes for bert)."""
    hf = {key: getattr(config, field) for key, field in _CONFIG_KEYS}
    hf.update({"architectures": [architecture], "model_type": MODEL_TYPE, "hidden_act": "gelu",
               "position_embedding_type": "absolute", "is_decoder": False, "add_cross_attention": False,
               "tie_word_embeddings": True, "initializer_range": 0.02, "classifier_dropout": None,
               "torch_dtype": "float32", "use_cache": True})
    if config.num_labels:
        hf["id2label"] = {str(i): f"LABEL_{i}" for i in range(config.num_labels)}
        hf["label2id"] = {f"LABEL_{i}": i for i in range(config.num_labels)}
    return hf


# --- model.safetensors -------------------------------------------------------

def _is_linear_weight(name, array):
    """PyTorch stores nn.Linear weights (out, in): every 2-D tensor but the embedding tables."""
    return array.ndim == 2 and not name.startswith("embeddings.")


def state_from_hf(tensors, path=files.WEIGHTS_NAME):
    """Hugging Face tensor names -> minillm names and layout (Linear weights transposed)."""
    state, decoder = {}, None
    for name, array in tensors.items():
        short = name[len("bert."):] if name.startswith("bert.") else name
        if short.endswith("LayerNorm.gamma") or short.endswith("LayerNorm.beta"):  # pre-2019 names
            short = short[:-len("gamma")] + "weight" if short.endswith("gamma") else short[:-len("beta")] + "bias"
        if short == "cls.predictions.decoder.weight":
            decoder = array
        elif short not in _SKIPPED:
            state[short] = array.T if _is_linear_weight(short, array) else array
    words = state.get("embeddings.word_embeddings.weight")
    if decoder is not None and words is not None and not np.array_equal(decoder, words):
        raise ValueError(f"{path}: cls.predictions.decoder.weight differs from the word embeddings; "
                         f"minillm's BERT ties them")
    return state


def load(directory, dtype="float32", cls=Bert):
    """A ``Bert`` (or subclass ``cls``) from a Hugging Face BERT folder, in eval mode."""
    hf, config_path = files.read_config(directory)
    config = config_from_hf(hf, config_path)
    path = files.weights_path(directory)
    state = state_from_hf(files.read_tensors(directory), path)
    classifier = state.get("classifier.weight")
    num_labels = 0 if classifier is None else classifier.shape[1]
    safe_io.check_layer_count(state, "encoder.layer.", config["n_layer"], path)   # before a list of names
    config = BertConfig(**config, num_labels=num_labels, dtype=dtype)
    shapes = cls.parameter_shapes(config)
    safe_io.check_arrays(state, shapes, path, f"a BERT with n_layer={config.n_layer}", optional=_OPTIONAL)
    if all(name in state for name in shapes):
        model = files.model_from_state(cls, config, state)
    else:   # a head the folder lacks keeps its random init (as transformers does)
        model = cls(config)
        model.load_state_dict(state, strict=False)
    return model.eval()  # as transformers' from_pretrained: dropout (from config.json) is off until .train()


def save(model, directory, architecture=None):
    """Write ``model`` (a Bert) as config.json + model.safetensors that transformers loads.

    ``architecture``: "BertForMaskedLM" (default), "BertForSequenceClassification"
    (default for a model with a classifier) or "BertModel" (the encoder and pooler only)."""
    if architecture is None:
        architecture = "BertForSequenceClassification" if model.config.num_labels else "BertForMaskedLM"
    if architecture not in ARCHITECTURES[:3]:
        raise ValueError(f"architecture {architecture!r} is not written by minillm; expected one of "
                         f"{list(ARCHITECTURES[:3])}")
    tensors = {}
    for name, array in model.state_dict().items():
        array = backend.to_numpy(array).astype(np.float32)
        if _is_linear_weight(name, array):
            array = array.T
        if architecture == "BertModel":
            if not name.startswith(("cls.", "classifier.")):
                tensors[name] = np.ascontiguousarray(array)
        else:
            head = name.startswith(("cls.", "classifier."))
            tensors[name if head else "bert." + name] = np.ascontiguousarray(array)
    files.write_folder(directory, config_to_hf(model.config, architecture), tensors)

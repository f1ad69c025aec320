"""BERT against Hugging Face transformers, both ways, on random-weight models built here
(no download): BertForMaskedLM logits, BertModel hidden states and pooler output,
BertForSequenceClassification logits, all with right padding; plus the converter's
errors. Skips when torch or transformers is missing."""
import json

import numpy as np
import pytest

import minillm.hf
from minillm import Bert, BertConfig, GPT, GPTConfig, no_grad

torch = pytest.importorskip("torch", reason="the parity tests compare with PyTorch's BERT")
transformers = pytest.importorskip("transformers", reason="the parity tests compare with transformers' BERT")

HF_CONFIG = dict(vocab_size=97, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=24, max_position_embeddings=20, type_vocab_size=2)
TOL = dict(rtol=1e-4, atol=2e-5)  # float32 on both sides


def inputs(seed=0, B=3, T=9):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, HF_CONFIG["vocab_size"], (B, T))
    types = rng.integers(0, 2, (B, T))
    mask = np.ones((B, T), dtype=np.int64)
    mask[0, 5:] = 0                                                     # row 0: 4 padding tokens
    mask[1, 8:] = 0
    return idx, types, mask


def hf_model(cls_name, tmp_path, seed=0, **extra):
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(transformers.BertConfig(**HF_CONFIG, **extra)).eval()
    with torch.no_grad():  # HF zero-inits biases; random ones test their layout too
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, 0.1)
    model.save_pretrained(tmp_path)
    return model


def hf_outputs(model, idx, types, mask):
    with torch.no_grad():
        return model(input_ids=torch.tensor(idx), token_type_ids=torch.tensor(types),
                     attention_mask=torch.tensor(mask))


def real(array, mask):
    """Only the real tokens' rows: what a padded position computes is nobody's business."""
    return array[mask.astype(bool)]


def test_masked_lm_logits_match_transformers_with_padding(tmp_path):
    hf = hf_model("BertForMaskedLM", tmp_path)
    model = minillm.hf.load(tmp_path)
    assert isinstance(model, Bert) and model.config.num_labels == 0
    idx, types, mask = inputs()
    with no_grad():
        ours = model(idx, attention_mask=mask, token_type_ids=types).data
    theirs = hf_outputs(hf, idx, types, mask).logits.numpy()
    np.testing.assert_allclose(real(ours, mask), real(theirs, mask), **TOL)


def test_saved_masked_lm_loads_in_transformers_with_the_same_logits(tmp_path):
    model = Bert(BertConfig(vocab_size=97, max_position_embeddings=20, n_layer=2, n_head=4, n_embd=16,
                            n_inner=24), seed=3)
    for p in model.parameters():  # biases and LayerNorms away from 0 and 1
        p.data += np.random.default_rng(p.size).normal(0, 0.05, p.shape).astype(p.dtype)
    model.save_pretrained(tmp_path)
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["architectures"] == ["BertForMaskedLM"] and written["hidden_act"] == "gelu"
    hf = transformers.AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(hf).__name__ == "BertForMaskedLM"
    idx, types, mask = inputs(1)
    with no_grad():
        ours = model(idx, mask, types).data
    np.testing.assert_allclose(real(ours, mask), real(hf_outputs(hf, idx, types, mask).logits.numpy(), mask),
                               **TOL)
    again = Bert.from_pretrained(tmp_path)
    for (name, a), (_, b) in zip(model.named_parameters(), again.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_bert_model_folder_both_ways(tmp_path):
    """A BertModel folder (no prefix, pooler, no MLM head): hidden states and pooler output."""
    hf = hf_model("BertModel", tmp_path / "hf")
    model = minillm.hf.load(tmp_path / "hf")
    idx, types, mask = inputs(2)
    out = hf_outputs(hf, idx, types, mask)
    with no_grad():
        h = model.hidden_states(idx, mask, types).data
        pooled = model.pooled(idx, mask, types).data
    np.testing.assert_allclose(real(h, mask), real(out.last_hidden_state.numpy(), mask), **TOL)
    np.testing.assert_allclose(pooled, out.pooler_output.numpy(), **TOL)
    minillm.hf.bert.save(model, tmp_path / "ours", architecture="BertModel")
    back = transformers.AutoModel.from_pretrained(tmp_path / "ours").eval()
    np.testing.assert_allclose(hf_outputs(back, idx, types, mask).pooler_output.numpy(), pooled, **TOL)


def test_sequence_classification_folder_both_ways(tmp_path):
    hf = hf_model("BertForSequenceClassification", tmp_path / "hf", num_labels=3)
    model = minillm.hf.load(tmp_path / "hf")
    assert model.config.num_labels == 3
    idx, types, mask = inputs(4)
    with no_grad():
        ours = model.classify(idx, mask, types).data
    np.testing.assert_allclose(ours, hf_outputs(hf, idx, types, mask).logits.numpy(), **TOL)
    model.save_pretrained(tmp_path / "ours")
    back = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "ours").eval()
    np.testing.assert_allclose(hf_outputs(back, idx, types, mask).logits.numpy(), ours, **TOL)


def test_legacy_gamma_beta_names_and_tied_decoder_are_read(tmp_path):
    from safetensors.numpy import load_file, save_file
    hf_model("BertForMaskedLM", tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    reference = minillm.hf.load(tmp_path)
    renamed = {n.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): a
               for n, a in tensors.items()}
    renamed["cls.predictions.decoder.weight"] = tensors["bert.embeddings.word_embeddings.weight"]
    renamed["cls.seq_relationship.weight"] = np.zeros((2, 16), np.float32)
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    model = minillm.hf.load(tmp_path)
    for (name, a), (_, b) in zip(reference.named_parameters(), model.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)
    renamed["cls.predictions.decoder.weight"] = renamed["cls.predictions.decoder.weight"] + 1
    save_file(renamed, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="decoder.weight differs from the word embeddings"):
        minillm.hf.load(tmp_path)


def test_unsupported_bert_settings_and_other_architectures_are_clear_errors(tmp_path):
    hf_model("BertForMaskedLM", tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for key, value in (("hidden_act", "gelu_new"), ("position_embedding_type", "relative_key"),
                       ("is_decoder", True)):
        (tmp_path / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=f"{key} = .* is not supported"):
            minillm.hf.load(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "num_attention_heads": 3}))
    with pytest.raises(ValueError, match=r"n_embd \(16\) must be divisible by n_head \(3\)"):
        minillm.hf.load(tmp_path)
    GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=4)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="model_type 'gpt2'.*only BERT"):
        Bert.from_pretrained(tmp_path / "gpt2")

"""The GPT an evaluation demo studies: ``--ckpt PATH``, or a small one trained on the spot.

    from small_gpt import add_model_flags, load_or_train
    add_model_flags(parser)                      # --ckpt, --train-iters, --seed
    gpt = load_or_train(args, parser)            # .model .tokenizer .text .train_ids .val_ids .source

Without ``--ckpt`` a 3-layer char GPT (width 96, context 64, 349k parameters)
trains on the shipped corpus for ``--train-iters`` steps (600: about a minute
on 2 cores, validation loss near 2.1 nats) and is saved as ``--out/ckpt.npz``.
Either way the corpus is split 90/10 as in ``train_shakespeare.py``, so
``val_ids`` is text the model never trained on.
"""
import dataclasses
import os

from minillm import GPT, GPTConfig, checkpoint, cli
from minillm.finetune import load_pretrained
from minillm.batches import split_ids
from minillm.corpus import load_corpus
from minillm.tokenizers import CharTokenizer
from minillm.train import TrainConfig, Trainer


@dataclasses.dataclass
class StudiedGPT:
    model: object
    tokenizer: object
    text: str
    train_ids: object
    val_ids: object
    source: str


def add_model_flags(parser, train_iters=600):
    parser.add_argument("--ckpt", type=cli.existing_file, default=None,
                        help="a checkpoint of demos/train_shakespeare.py (default: train a small GPT here)")
    parser.add_argument("--train-iters", type=cli.positive_int, default=train_iters,
                        help="steps for the small GPT trained when --ckpt is not given")
    parser.add_argument("--seed", type=cli.non_negative_int, default=0, help="seeds training, bootstrap and samples")


def load_or_train(args, parser):
    """A ``StudiedGPT``; flag errors end the program through ``parser.error`` (one line, exit 2)."""
    if args.ckpt is not None:
        try:
            model, tokenizer = load_pretrained(args.ckpt)
            data = checkpoint.load(args.ckpt).get("data")
        except (FileNotFoundError, checkpoint.CheckpointError) as error:
            parser.error(f"--ckpt: {error}")
        if tokenizer is None:
            parser.error(f"--ckpt: {args.ckpt} holds no tokenizer (write it with demos/train_shakespeare.py)")
        text = load_corpus(data or None)
        train_ids, val_ids = split_ids(tokenizer.encode(text))
        return StudiedGPT(model, tokenizer, text, train_ids, val_ids, f"checkpoint {args.ckpt}")
    text = load_corpus()
    tokenizer = CharTokenizer.from_text(text)
    train_ids, val_ids = split_ids(tokenizer.encode(text))
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=3, n_head=4, n_embd=96)
    model = GPT(config, seed=args.seed)
    print(f"training a small GPT ({model.num_parameters():,} parameters) for {args.train_iters} steps "
          "(pass --ckpt to study a trained one) ...", flush=True)
    train_config = TrainConfig(iters=args.train_iters, batch_size=16, lr=3e-3, min_lr=3e-4,
                               warmup_iters=min(100, args.train_iters // 5),
                               eval_every=args.train_iters, eval_iters=10, seed=args.seed)
    Trainer(model, train_ids, val_ids, train_config, tokenizer=tokenizer,
            out_dir=getattr(args, "out", None) or os.path.join("out", "small_gpt")).run()
    return StudiedGPT(model, tokenizer, text, train_ids, val_ids, f"small GPT trained {args.train_iters} steps here")

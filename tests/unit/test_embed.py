"""job/pipelines/embed.py: the vectors SentenceTransformer(model).encode(texts) gives, for each
pooling mode, with and without Dense and Normalize, with prompts, from raybake's own batches.

Each model is a real sentence-transformers save (tests/models.py); each test asks the library
itself for the reference, in the same test.
"""

import numpy as np
import pytest
import torch
from models import MINILM, ST_PROMPTS, make_st_model
from sentence_transformers import SentenceTransformer
from transformers import AutoTokenizer, BertConfig, BertModel

from job.__main__ import main
from job.config import TaskOptions
from job.pipelines import TASKS
from job.pipelines.base import Task

# Lengths from 1 to past every model's limit: one batch holds much padding, and one row is cut.
TEXTS = ["The cat sat on the mat.", "x", "Ray spreads work over GPUs, " * 3, "A much longer sentence " * 60]
# name: make_st_model's arguments. The families they stand for are in docs/models.md.
MODELS = {
    "cls+dense+normalize": {"pooling": "cls", "dense": 16},  # BGE, with a projection as in LaBSE
    "mean": {"pooling": "mean", "normalize": False},
    "mean+normalize": {"pooling": "mean"},  # all-MiniLM, all-mpnet, E5
    "max+normalize": {"pooling": "max"},
    "max+dense": {"pooling": "max", "dense": 8, "normalize": False},
    "lasttoken+normalize (decoder)": {"pooling": "lasttoken", "decoder": True},  # e5-mistral, Qwen3-Embedding
    "lasttoken (decoder)": {"pooling": "lasttoken", "decoder": True, "normalize": False},
    "weightedmean": {"pooling": "weightedmean", "normalize": False},  # SGPT
    "mean_sqrt_len_tokens": {"pooling": "mean_sqrt_len_tokens", "normalize": False},
    "cls, max_seq_length 16": {"pooling": "cls", "normalize": False, "max_seq_length": 16},
}


@pytest.fixture(scope="module")
def st_model(tmp_path_factory):
    made: dict[str, str] = {}

    def make(name: str, **kwargs) -> str:
        if name not in made:
            made[name] = make_st_model(tmp_path_factory.mktemp("st") / "model", **(MODELS.get(name) or kwargs))
        return made[name]

    return make


def raybake_vectors(model: str | Task, texts: list[str], **options) -> np.ndarray:
    """The Task on one padded batch of all the texts, as a worker runs it."""
    task = model if isinstance(model, Task) else TASKS["embed"](model, TaskOptions(device="cpu", **options))
    encoded = task.encode(texts)
    with torch.inference_mode():
        vectors = task.infer_columns(task.collate(encoded.ids, texts, None))["embedding"]
    assert task.columns()[0].type.list_size == vectors.shape[1]  # the Arrow column's width
    return vectors


def assert_same_vectors(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape and got.dtype == np.float32
    cosine = np.sum(got * expected, axis=1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999, cosine
    # The same length too: a Normalize the model lacks, or one missed, shows only here.
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), np.linalg.norm(expected, axis=1), rtol=1e-4)


@pytest.mark.parametrize("name", MODELS)
def test_vectors_equal_sentence_transformers(st_model, name):
    model = st_model(name)
    expected = SentenceTransformer(model, device="cpu").encode(TEXTS)
    assert_same_vectors(raybake_vectors(model, TEXTS), expected)


def test_the_output_width_is_the_last_dense_layers_and_the_limit_is_max_seq_length(st_model):
    task = TASKS["embed"](st_model("cls+dense+normalize"), TaskOptions(device="cpu"))
    assert task.columns()[0].type.list_size == 16 and task.config.hidden_size == 32
    short = TASKS["embed"](st_model("cls, max_seq_length 16"), TaskOptions(device="cpu"))
    encoded = short.encode(TEXTS)
    assert short.max_length == 16 and max(map(len, encoded.ids)) == 16 and encoded.truncated[-1]


def test_the_packaged_minilm_equals_sentence_transformers_and_is_cut_at_its_max_seq_length():
    long = "A much longer sentence about cats and mats " * 40  # far past MiniLM's 256 tokens
    texts = [*TEXTS, long]
    task = TASKS["embed"](MINILM, TaskOptions(device="cpu"))
    assert task.max_length == 256 and task.columns()[0].type.list_size == 384
    assert_same_vectors(raybake_vectors(task, texts), SentenceTransformer(MINILM, device="cpu").encode(texts))


@pytest.mark.parametrize(
    "model",
    [
        # INSTRUCTOR-like: the prompt's tokens are left out of the mean.
        {"pooling": "mean", "include_prompt": False},
        # e5-mistral-like: a decoder's last token, which has read the prompt.
        {"pooling": "lasttoken", "decoder": True},
        {"pooling": "cls", "include_prompt": False, "dense": 16},
    ],
    ids=["mean, include_prompt=False", "lasttoken", "cls+dense, include_prompt=False"],
)
def test_prompts_are_those_sentence_transformers_puts_before_the_text(st_model, model):
    path = st_model(repr(model), **model, prompts=ST_PROMPTS, default_prompt_name="passage")
    reference = SentenceTransformer(path, device="cpu")
    cases = {
        "the model's default prompt": ({}, {}),
        "--prompt-name query": ({"prompt_name": "query"}, {"prompt_name": "query"}),
        "--prompt": ({"prompt": "Represent this sentence: "}, {"prompt": "Represent this sentence: "}),
        "--prompt '' (none)": ({"prompt": ""}, {"prompt": ""}),
    }
    got = {case: raybake_vectors(path, TEXTS, **ours) for case, (ours, _) in cases.items()}
    for case, (_, theirs) in cases.items():
        assert_same_vectors(got[case], reference.encode(TEXTS, **theirs))
    # Each prompt changes the vectors, so the comparison above would catch one left out.
    assert not np.allclose(got["the model's default prompt"], got["--prompt-name query"], atol=1e-3)
    assert not np.allclose(got["the model's default prompt"], got["--prompt '' (none)"], atol=1e-3)


def test_a_prompt_name_the_model_lacks_is_refused_with_the_names_it_has(st_model):
    path = st_model("prompted", pooling="mean", prompts=ST_PROMPTS)
    with pytest.raises(ValueError) as refused:
        TASKS["embed"](path, TaskOptions(device="cpu", prompt_name="passge"))
    message = str(refused.value)
    assert "\n" not in message and "'passge'" in message and "'passage'" in message and "'query'" in message


def test_a_model_without_a_sentence_transformers_configuration_is_mean_pooled_and_normalised(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    model, tokenizer = BertModel(config).eval(), AutoTokenizer.from_pretrained(MINILM)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with torch.no_grad():
        batch = tokenizer(TEXTS, padding=True, truncation=True, return_tensors="pt")
        hidden = model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        expected = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()
    assert_same_vectors(raybake_vectors(str(tmp_path), TEXTS), expected)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--task", "classify", "--prompt", "query: "], "options of --task embed, not of --task classify"),
        (["--prompt", "query: ", "--prompt-name", "query"], "not allowed with argument"),
    ],
)
def test_prompt_flags_are_refused_where_they_mean_nothing(args, says, capsys, tmp_path):
    with pytest.raises(SystemExit) as exited:
        main(["--corpus", str(tmp_path), "--check", *args])
    assert exited.value.code == 2 and says in capsys.readouterr().err

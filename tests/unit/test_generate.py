"""generate against transformers' own `model.generate`, in the same test: tiny random causal LMs
(GPT-2, Llama) with a trained byte-level BPE and a ChatML chat template (tests/models.py)."""

import json

import pytest
import torch
from models import make_chat_lm, make_seq2seq_lm
from test_pipelines import process_corpus
from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

from job.__main__ import main
from job.config import RunConfig, TaskOptions, WorkerConfig
from job.corpus import Fields, scan
from job.pipelines.generate import document_seed
from job.spec import of as spec_of
from job.worker import ShardWorker

TEXTS = [
    "Rooftop solar panels.",
    "The grid operator warned that midday solar output exceeds local demand, again and again this year.",
    "yes",
    "Offshore wind farms need deep-water ports.",
    "Summarise the following text.",
    "maybe no",
    "You are a helpful assistant. The answer is",
    "stop",
    "Turbine blades are assembled in the port before they go out to sea on ships.",
    "then",
]
NEW = 12


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def chat_lm(request, tmp_path_factory):
    return make_chat_lm(tmp_path_factory.mktemp("lm") / request.param, arch=request.param)


@pytest.fixture(scope="module")
def reference(chat_lm):
    return AutoTokenizer.from_pretrained(chat_lm), AutoModelForCausalLM.from_pretrained(chat_lm).eval()


def records(texts=TEXTS):
    return [{"id": f"doc-{i}", "text": t} for i, t in enumerate(texts)]


def generate(tmp_path, model, recs, *, fields=None, token_budget=400, max_batch_size=8, **options):
    """raybake's rows by document id: one worker over a one-shard JSONL corpus of `recs`."""
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps(r) + "\n" for r in recs))
    config = WorkerConfig(
        task="generate",
        model=model,
        options=TaskOptions(max_new_tokens=NEW, **options),
        fields=fields or Fields(id="id"),
        corpus=str(corpus),
        output=str(tmp_path / f"out-{token_budget}-{max_batch_size}"),
        token_budget=token_budget,
        max_batch_size=max_batch_size,
        threads=1,
    )
    stats, rows = process_corpus(ShardWorker(config), corpus)
    return stats, {r["id"]: r for r in rows}


def chat_ids(tokenizer, text, system=None):
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    return tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)


def expected(reference, inputs, *, stop=None, **settings):
    """What model.generate gives one document alone: its text, finish reason and token counts."""
    tokenizer, model = reference
    with torch.no_grad():
        out = model.generate(
            **inputs,
            max_new_tokens=NEW,
            stop_strings=stop,
            tokenizer=tokenizer if stop else None,
            pad_token_id=tokenizer.pad_token_id,
            **settings,
        )
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    text = tokenizer.decode(new, skip_special_tokens=True)
    if stop and any(s in text for s in stop):
        cut = min(text.find(s) for s in stop if s in text)
        return {"generated_text": text[:cut], "finish_reason": "stop", "completion_tokens": len(new)}
    if tokenizer.eos_token_id in new:
        end = new.index(tokenizer.eos_token_id) + 1
        return {"generated_text": text, "finish_reason": "eos", "completion_tokens": end}
    return {"generated_text": text, "finish_reason": "length", "completion_tokens": len(new)}


def got(row):
    return {k: row[k] for k in ("generated_text", "finish_reason", "completion_tokens")}


def test_greedy_text_finish_reason_and_counts_equal_model_generate_with_the_chat_template(tmp_path, chat_lm, reference):
    stats, rows = generate(tmp_path, chat_lm, records())
    tokenizer, _ = reference
    for i, text in enumerate(TEXTS):
        inputs = chat_ids(tokenizer, text)
        row = rows[f"doc-{i}"]
        assert got(row) == expected(reference, inputs, do_sample=False), text
        assert row["prompt_tokens"] == row["n_tokens"] == inputs["input_ids"].shape[1]
    # Rows of both kinds, or the comparison above would not test where a row ends.
    assert {r["finish_reason"] for r in rows.values()} == {"eos", "length"}
    assert stats["batches"] > 1 and stats["column_sums"] == {
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows.values()),
        "completion_tokens": sum(r["completion_tokens"] for r in rows.values()),
    }


def test_a_documents_greedy_text_is_the_same_alone_and_in_a_mixed_length_batch(tmp_path, chat_lm):
    _, batched = generate(tmp_path, chat_lm, records(), token_budget=10_000, max_batch_size=64)
    _, alone = generate(tmp_path, chat_lm, records(), max_batch_size=1)
    assert batched == alone


def test_seeded_samples_are_the_same_in_any_batch_and_equal_model_generate_sampling_alone(tmp_path, chat_lm, reference):
    sampling = {"temperature": 0.8, "top_p": 0.9, "seed": 7}
    _, batched = generate(tmp_path, chat_lm, records(), token_budget=10_000, max_batch_size=64, **sampling)
    _, alone = generate(tmp_path, chat_lm, records(), max_batch_size=1, **sampling)
    assert batched == alone
    tokenizer, _ = reference
    for i, text in enumerate(TEXTS):
        torch.manual_seed(document_seed(7, f"doc-{i}"))
        want = expected(reference, chat_ids(tokenizer, text), do_sample=True, temperature=0.8, top_p=0.9, top_k=0)
        assert got(batched[f"doc-{i}"]) == want, text
    _, greedy = generate(tmp_path, chat_lm, records())
    _, reseeded = generate(tmp_path, chat_lm, records(), **{**sampling, "seed": 8})
    differ = [i for i in batched if batched[i]["generated_text"] != reseeded[i]["generated_text"]]
    assert len(differ) >= 3 and any(batched[i] != greedy[i] for i in batched)


def test_stop_strings_end_rows_as_model_generate_stop_strings_does_and_are_left_out(tmp_path, chat_lm, reference):
    _, greedy = generate(tmp_path, chat_lm, records())
    # Stops drawn from what the model writes: the middle of the longest completion, and a string
    # that never occurs (a second stop must not change where the first ends a row).
    longest = max(greedy.values(), key=lambda r: len(r["generated_text"]))["generated_text"]
    stop = [longest[len(longest) // 2 : len(longest) // 2 + 2], "never-written"]
    _, rows = generate(tmp_path, chat_lm, records(), stop=tuple(stop))
    tokenizer, _ = reference
    for i, text in enumerate(TEXTS):
        want = expected(reference, chat_ids(tokenizer, text), stop=stop, do_sample=False)
        assert got(rows[f"doc-{i}"]) == want, text
    stopped = [r for r in rows.values() if r["finish_reason"] == "stop"]
    assert stopped and all(stop[0] not in r["generated_text"] for r in stopped)


def test_a_system_message_and_a_prompt_template_of_record_fields_make_the_user_turn(tmp_path, chat_lm, reference):
    recs = [{"id": f"doc-{i}", "title": f"Note {i}", "text": t} for i, t in enumerate(TEXTS[:4])]
    del recs[2]["title"]
    template = "Summarise: {title}\n{text}"
    fields = Fields(id="id", template=template)
    system = "You are a helpful assistant."
    _, rows = generate(tmp_path, chat_lm, recs, fields=fields, system=system)
    assert rows["doc-2"]["error"] == "no field 'title' (the prompt template names it)"
    assert rows["doc-2"]["generated_text"] is None
    tokenizer, _ = reference
    for rec in recs[:2] + recs[3:]:
        inputs = chat_ids(tokenizer, template.format(**rec), system=system)
        assert got(rows[rec["id"]]) == expected(reference, inputs, do_sample=False)
        assert rows[rec["id"]]["prompt_tokens"] == inputs["input_ids"].shape[1]


def test_chat_off_generates_from_the_plain_text_with_the_tokenizers_special_tokens(tmp_path, chat_lm, reference):
    _, rows = generate(tmp_path, chat_lm, records(), chat="off")
    tokenizer, _ = reference
    for i, text in enumerate(TEXTS):
        inputs = tokenizer(text, return_tensors="pt")  # Llama's tokenizer adds BOS here
        assert got(rows[f"doc-{i}"]) == expected(reference, inputs, do_sample=False), text


def test_chat_on_without_a_chat_template_and_system_without_one_are_refused(tmp_path):
    plain = make_chat_lm(tmp_path / "plain", chat_template=False)
    with pytest.raises(ValueError, match="has no chat template; use --chat auto or off"):
        generate(tmp_path, plain, records(), chat="on")
    with pytest.raises(ValueError, match="--system needs a chat template"):
        generate(tmp_path, plain, records(), system="Be brief.")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt-template", "Summarise: {text"], "prompt template 'Summarise: {text' is malformed"),
        (["--prompt-template", "{}"], "has a positional field {}"),
        (["--prompt-template", "{text.upper}"], "{text.upper} reaches into a value"),
        (["--prompt-template", "{text}", "--task", "embed"], "--prompt-template is for --task generate"),
        (["--temperature", "-1"], "--temperature must be >= 0 (0 is greedy), got -1.0"),
        (["--top-p", "0"], "--top-p must be in (0, 1], got 0.0"),
        (["--stop", ""], "--stop needs a non-empty string"),
        (["--system", "hi", "--chat", "off"], "--system needs the model's chat template"),
    ],
)
def test_generation_options_that_cannot_work_are_one_line_errors_at_start(args, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--corpus", "c.jsonl", "--output", "o", "--task", "generate", *args])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in err and "Traceback" not in err


def test_the_spec_of_a_generate_run_reads_back_equal_so_a_rerun_resumes(tmp_path):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text('{"text": "x"}\n')
    _, files = scan(str(corpus))
    options = TaskOptions(stop=("\n\n", "END"), temperature=0.5, system="Be brief.")
    worker = WorkerConfig("generate", "m", options, Fields(template="Q: {text}"), str(corpus), "o", None, 8, 1)
    spec = spec_of(RunConfig(worker, 1 << 20, None, None, 0, False), files)
    assert json.loads(json.dumps(spec)) == spec and spec["options"]["stop"] == ["\n\n", "END"]


def test_an_encoder_decoders_greedy_text_equals_model_generate(tmp_path):
    t5 = make_seq2seq_lm(tmp_path / "t5")
    _, rows = generate(tmp_path, t5, records())
    tokenizer, model = AutoTokenizer.from_pretrained(t5), AutoModelForSeq2SeqLM.from_pretrained(t5).eval()
    for i, text in enumerate(TEXTS):
        inputs = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            new = model.generate(**inputs, max_new_tokens=NEW, do_sample=False)[0, 1:].tolist()  # after the start token
        row = rows[f"doc-{i}"]
        assert row["generated_text"] == tokenizer.decode(new, skip_special_tokens=True), text
        assert (row["completion_tokens"], row["prompt_tokens"]) == (len(new), inputs["input_ids"].shape[1])

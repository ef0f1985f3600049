"""generate through `invoke submit` on a real local Ray, read back from the Parquet output and
compared with transformers' `model.generate` on the same chat model."""

import json
import re
import shlex

import pyarrow.parquet as pq
import torch
from models import make_chat_lm
from raycluster import invoke
from transformers import AutoModelForCausalLM, AutoTokenizer

NEW = 10
SYSTEM = "Be brief."
TEMPLATE = "Title: {title}. {text}"
TEXTS = [
    "Rooftop solar panels produced more electricity this spring.",
    "The grid operator warned that midday solar output exceeds local demand.",
    "yes",
    "Offshore wind farms need deep-water ports where turbine blades are assembled.",
    "Summarise the following text.",
    "maybe no",
    "You are a helpful assistant. The answer is",
    "then stop",
]


def submit(head, tmp_path, name, corpus, model, *job_args):
    env = head.invoke_env(tmp_path / name)
    args = ["--max-new-tokens", str(NEW), "--prompt-template", TEMPLATE, "--system", SYSTEM, *job_args]
    done = invoke(
        env, "submit", "--corpus", str(corpus), "--task", "generate", "--model", model, "--id-field", "id",
        "--job-args", shlex.join(args),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = tmp_path / name / re.search(r"submitted (\S+);", done.stdout).group(1)
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest, {r["id"]: r for r in pq.read_table(out / "parts").to_pylist()}


def test_generate_through_invoke_submit_equals_model_generate_and_seeded_samples_repeat(ray_head, tmp_path):
    model = make_chat_lm(tmp_path / "lm", arch="llama")
    corpus = tmp_path / "corpus.jsonl"
    records = [{"id": f"doc-{i}", "title": f"Note {i}", "text": t} for i, t in enumerate(TEXTS)]
    del records[5]["title"]
    corpus.write_text("".join(json.dumps(r) + "\n" for r in records))

    manifest, rows = submit(ray_head, tmp_path, "greedy", corpus, model)
    tokenizer, lm = AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model).eval()
    for rec in records:
        row = rows[rec["id"]]
        if "title" not in rec:
            assert row["error"] == "no field 'title' (the prompt template names it)"
            continue
        messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": TEMPLATE.format(**rec)}]
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            out = lm.generate(**inputs, max_new_tokens=NEW, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        new = out[0, inputs["input_ids"].shape[1] :].tolist()
        eos = tokenizer.eos_token_id in new
        assert row["generated_text"] == tokenizer.decode(new, skip_special_tokens=True), rec
        assert row["finish_reason"] == ("eos" if eos else "length")
        assert row["completion_tokens"] == (new.index(tokenizer.eos_token_id) + 1 if eos else NEW)
        assert row["prompt_tokens"] == inputs["input_ids"].shape[1]
    ok = [r for r in rows.values() if r["error"] is None]
    assert {r["finish_reason"] for r in ok} == {"eos", "length"}
    assert manifest["counts"]["error"] == 1 and manifest["errors_by_reason"] == {
        "no field 'title' (the prompt template names it)": 1
    }
    tokens = manifest["tokens"]
    assert tokens["prompt_tokens"] == sum(r["prompt_tokens"] for r in ok)
    assert tokens["completion_tokens"] == sum(r["completion_tokens"] for r in ok)

    sampling = ["--temperature", "0.9", "--top-p", "0.95", "--seed", "11"]
    _, first = submit(ray_head, tmp_path, "sampled", corpus, model, *sampling)
    # Another batching of the same documents (one per batch): the same samples.
    _, again = submit(ray_head, tmp_path, "sampled-again", corpus, model, *sampling, "--max-batch-size", "1")
    assert first == again
    assert sum(first[i]["generated_text"] != rows[i]["generated_text"] for i in rows) >= 3

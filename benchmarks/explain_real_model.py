"""Explain a run with a real model behind a local OpenAI-compatible server and print what can be
measured about the explanation: seconds, how the claims came back, answers cut off, the largest
prompt, claims checked and their verdicts, where the prose and the claims blocks disagree,
counterfactuals, and simulatability against chance and the majority action.

Opt-in: it needs a server, e.g. llama-cpp-python's (a CPU build compiles for 20-45 minutes on
2 cores) with a small instruct model in GGUF format:

    .venv/bin/pip install 'llama-cpp-python[server]'
    .venv/bin/python -m llama_cpp.server --model qwen2.5-0.5b-instruct-q4_k_m.gguf --n_ctx 2048 --port 8000 &
    OPENAI_API_KEY=local .venv/bin/python benchmarks/explain_real_model.py data/Catch/runs/demo/run.ckpt \
        --base-url http://127.0.0.1:8000/v1 --context-tokens 2048

The same through pytest, on the tests' Catch run:

    INSIGHT_LLM_BASE_URL=http://127.0.0.1:8000/v1 .venv/bin/python -m pytest -m llm tests/explain

--model defaults to the first model the server lists; --base-url to INSIGHT_LLM_BASE_URL.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from insight_cli.explain.stage import ExplainConfig, run


def first_model(base_url: str) -> str:
    import openai

    client = openai.OpenAI(api_key=os.environ.get("OPENAI_API_KEY", "local"), base_url=base_url, max_retries=0)
    return client.models.list().data[0].id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--base-url", default=os.environ.get("INSIGHT_LLM_BASE_URL"))
    parser.add_argument("--model", default=os.environ.get("INSIGHT_LLM_MODEL"))
    parser.add_argument("--context-tokens", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument("--decisions", type=int, default=2)
    parser.add_argument("--simulate", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if not args.base_url:
        parser.error("give --base-url or set INSIGHT_LLM_BASE_URL")
    os.environ.setdefault("OPENAI_API_KEY", "local")
    model = args.model or first_model(args.base_url)
    started = time.perf_counter()
    result = run(
        ExplainConfig(
            checkpoint=args.checkpoint,
            llm=model,
            base_url=args.base_url,
            decisions=args.decisions,
            simulate=args.simulate,
            max_tokens=args.max_tokens,
            context_tokens=args.context_tokens,
            timeout=args.timeout,
            retries=1,
            out=args.out,
            device="cpu",
        )
    )
    seconds = time.perf_counter() - started
    document, check = result.document, result.faithfulness
    answers = document["policy"] + document["decisions"]
    blocks = [answer["claims_block"]["status"] for answer in answers]
    prompts = [answer["prompt_tokens"] for answer in answers if answer["prompt_tokens"]]
    print(f"model {model} at {args.base_url}: {seconds:.0f} s, claims as {document['output_format']}")
    print(
        f"claims blocks: {', '.join(f'{blocks.count(s)} {s}' for s in dict.fromkeys(blocks))}; "
        f"{check['truncated']} of {len(answers)} answers cut off at --max-tokens {args.max_tokens}; "
        f"largest prompt {max(prompts, default=0):,} tokens of {args.context_tokens:,}; "
        f"{sum(answer['left_out'] for answer in answers)} exchanges left out to fit"
    )
    print(
        f"faithfulness: {check['claims']} claims, {check['supported']} supported, {check['contradicted']} "
        "contradicted, "
        f"{check['unsupported']} unsupported; {check['disagreements']} where the prose and the claims blocks disagree"
    )
    tested = check["counterfactuals"]
    print(f"counterfactuals: {tested['confirmed']} of {tested['checked']} confirmed")
    score = check["simulatability"]
    if score:
        print(
            f"simulatability: {score['accuracy']:.1%} of {score['states']} states (chance {score['chance']:.1%}, "
            f"always {score['majority_action']} {score['majority']:.1%})"
        )


if __name__ == "__main__":
    main()

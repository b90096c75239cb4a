import json
import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import pytest
from support import toward_the_ball
from typer.testing import CliRunner

from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.explain.backends import OpenAIBackend
from insight_cli.explain.stage import ExplainConfig, run
from insight_cli.explain.structured import reader_schema
from insight_cli.extract_policy.export import policy_document, write_exports
from insight_cli.extract_policy.symbolic import Interface, variables_for
from insight_cli.extract_policy.symbolic import extract as extract_policy
from insight_cli.files import write_atomically

runner = CliRunner()

ANSWERS = {  # what the fake model says, by the start of the question
    "Explain the action NOOP": "NOOP is chosen when the ball is right above the paddle.",
    "Explain the action RIGHT": "x_ball_4 raises the logit of RIGHT, while x_paddle_4 lowers it.",
    "Explain the action LEFT": "x_ball_4 raises the logit of LEFT.",  # wrong: it lowers it
    "Summarise": "The agent moves the paddle toward the ball.",
    "Decision": "The agent moved because the ball is away from the paddle.",
    "Predict": "RIGHT",
}


class FakeOpenAI(BaseHTTPRequestHandler):
    """Just enough of POST /v1/chat/completions: key 'good-key', model 'fake-model', `answers`
    by the start of the question. The first `failures` requests answer 503; the requests
    numbered in `slow` (from 1; None: every one) take `delay` seconds; from request `broken_from`
    on (counting from 0) every one answers 500; answers to questions starting with one of `cut`
    end with finish_reason "length"; a response_format whose type is in `refused` is refused with
    that status (llama.cpp's server: 500 for json_schema, json_object with a schema taken)."""

    requests: list[dict] = []
    answers = ANSWERS
    failures = 0
    delay = 0.0
    slow = None
    broken_from = None
    cut = ()
    refused: dict[str, int] = {}

    def do_POST(self):
        cls = type(self)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        cls.requests.append(body)
        if cls.slow is None or len(cls.requests) in cls.slow:
            time.sleep(cls.delay)
        if cls.failures:
            cls.failures -= 1
            return self._send(503, {"error": {"message": "busy", "type": "server_error"}})
        if self.headers.get("Authorization") != "Bearer good-key":
            return self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        if body["model"] != "fake-model":
            return self._send(404, {"error": {"message": "no such model", "type": "invalid_request_error"}})
        if cls.broken_from is not None and len(cls.requests) > cls.broken_from:
            return self._send(500, {"error": {"message": "the model crashed", "type": "server_error"}})
        refused = cls.refused.get(body.get("response_format", {}).get("type"))
        if refused:
            message = "Input should be 'text' or 'json_object' (body.response_format.type)"
            return self._send(refused, {"error": {"message": message, "type": "invalid_request_error"}})
        question = body["messages"][-1]["content"]
        answer = next(text for start, text in cls.answers.items() if question.startswith(start))
        finish = "length" if question.startswith(cls.cut) else "stop"
        self._send(
            200,
            {
                "id": "fake",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextmanager
def serving(handler):
    """An HTTP server on a free local port, answering with `handler`: its /v1 URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.handle_error = lambda request, address: None  # a client that timed out closed its end: expected
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setattr(FakeOpenAI, "requests", [])  # the other knobs are set with monkeypatch too, and undone
    with serving(FakeOpenAI) as url:
        yield url


def fake_llm(catch_run, server, tmp_path, **settings) -> ExplainConfig:
    """An explanation of the Catch run by the fake server's model, written to tmp_path on the CPU."""
    settings = {"out": tmp_path, "device": "cpu", **settings}
    return ExplainConfig(checkpoint=catch_run, llm="fake-model", base_url=server, **settings)


def test_offline_explanation_is_complete_and_faithful(catch_run, tmp_path):
    result = run(ExplainConfig(checkpoint=catch_run, decisions=2, out=tmp_path, device="cpu"))
    document = json.loads((tmp_path / "explanation.json").read_text())
    assert [section["action"] for section in document["policy"]] == ["NOOP", "RIGHT", "LEFT", None]
    check = result.faithfulness
    assert check["claims"] >= 6 and check["supported"] == check["claims"]
    right = document["policy"][1]["answer"]
    assert "x_ball_4" in right and "x_paddle_4" in right
    assert len(document["decisions"]) == 2
    for record in document["decisions"]:
        assert record["action"] in ("NOOP", "RIGHT", "LEFT") and record["variables"]
        assert abs(sum(record["probabilities"].values()) - 1) < 1e-6
        picture = cv2.imread(str(tmp_path / record["picture"]))
        assert picture is not None and picture.shape[2] == 3
    markdown = (tmp_path / "explanation.md").read_text()
    for heading in ("## Equations", "### RIGHT", "### Summary", "## Decisions", "## Faithfulness"):
        assert heading in markdown
    assert "decision_1.png" in markdown and "logit_RIGHT" in document["context"]


def test_a_dataset_frame(catch_run, tmp_path):
    result = run(ExplainConfig(checkpoint=catch_run, frame_index=5, out=tmp_path, device="cpu"))
    assert [d["source"] for d in result.document["decisions"]] == ["dataset frame 5"]
    with pytest.raises(UsageError, match="past the dataset's last frame"):
        run(ExplainConfig(checkpoint=catch_run, frame_index=10**6, out=tmp_path / "x", device="cpu"))
    assert not (tmp_path / "x").exists()


def test_llm_dialogue_over_http_and_its_claims_checked(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "failures", 1)  # the client retries with backoff
    result = run(fake_llm(catch_run, server, tmp_path, decisions=1, retries=2, temperature=0.3, simulate=3))
    requests = FakeOpenAI.requests[1:]
    assert len(requests) == 4 + 1 + 3  # three actions and the summary in one dialogue, a decision, three readers
    assert [len(r["messages"]) for r in requests[:4]] == [2, 4, 6, 8]  # each answer is kept for the next
    assert requests[0]["messages"][0]["role"] == "system" and "logit_LEFT" in requests[0]["messages"][0]["content"]
    assert requests[0]["temperature"] == 0.3
    assert requests[4]["messages"][1]["content"].startswith("Decision 1: in the current state")
    assert all(r["max_tokens"] == 512 for r in requests[:5]) and all(r["max_tokens"] == 64 for r in requests[5:])
    assert requests[0]["response_format"]["json_schema"]["name"] == "policy_explanation"
    reader = requests[5]["messages"]
    assert "logit_" not in reader[1]["content"] and len(reader) == 2  # a fresh conversation, without the equations
    check = result.faithfulness
    assert (check["supported"], check["contradicted"]) == (2, 1)
    assert check["problems"][0]["variable"] == "x_ball_4" and check["problems"][0]["action"] == "LEFT"
    assert "contradicted" in (tmp_path / "explanation.md").read_text()


@pytest.mark.parametrize(
    "key, model, message",
    [
        (None, "fake-model", "OPENAI_API_KEY is not set"),
        ("bad-key", "fake-model", "refused the API key"),
        ("good-key", "gpt-9", "does not serve the model 'gpt-9'"),
    ],
)
def test_llm_errors(catch_run, tmp_path, server, monkeypatch, key, model, message):
    if key is None:
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    else:
        monkeypatch.setenv("OPENAI_API_KEY", key)
    with pytest.raises(InsightError, match=message):
        run(ExplainConfig(checkpoint=catch_run, llm=model, base_url=server, decisions=0, retries=0, out=tmp_path))
    assert not (tmp_path / "explanation.md").exists()


def test_slow_server(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "delay", 2.0)
    with pytest.raises(InsightError, match="did not answer in time"):
        run(fake_llm(catch_run, server, tmp_path, decisions=0, retries=0, timeout=0.3))


def test_unreachable_server(catch_run, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    with pytest.raises(InsightError, match="cannot reach the LLM server"):
        run(
            ExplainConfig(
                checkpoint=catch_run,
                llm="fake-model",
                base_url="http://127.0.0.1:9/v1",
                decisions=0,
                retries=0,
                out=tmp_path,
            )
        )


def test_cli(catch_run, tmp_path):
    result = runner.invoke(
        app,
        ["explain", str(catch_run), "--decisions", "1", "--show-prompts", "--out", str(tmp_path), "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert "faithfulness:" in result.output and "The policy gives every action a logit" in result.output
    result = runner.invoke(app, ["explain", str(catch_run), "--temperature", "5"])
    assert result.exit_code == 2


def test_a_policy_of_other_objects_is_refused(catch_run, tmp_path):
    objects, actions = ["ball", "paddle", "bullet"], ["NOOP", "RIGHT", "LEFT"]
    interface = Interface(variables_for(objects), actions)
    policy = extract_policy(toward_the_ball(objects, 0.0), interface, threshold=0.01, digits=3)
    write_exports(
        tmp_path,
        policy,
        policy_document(policy, "Catch", {}, objects, {"run": "other.ckpt", "fidelity": {}, "returns": {}}),
    )
    result = runner.invoke(
        app,
        [
            "explain",
            str(catch_run),
            "--policy",
            str(tmp_path / "policy.json"),
            "--out",
            str(tmp_path / "out"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "another game, object set" in result.output
    assert len(result.output.strip().splitlines()) <= 2 and not (tmp_path / "out").exists()


class NotAnApi(BaseHTTPRequestHandler):
    """Status 200 with `body` of `content_type` for every POST: what a wrong --base-url may serve."""

    content_type, body = "application/json", b""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/json", b"{not json"),
        ("text/html", b"<html><body>It works!</body></html>"),
        ("application/json", b'{"choices": "x"}'),
    ],
)
def test_a_server_that_is_no_chat_api_is_one_line(monkeypatch, content_type, body):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(NotAnApi, "content_type", content_type)
    monkeypatch.setattr(NotAnApi, "body", body)
    with serving(NotAnApi) as url:
        backend = OpenAIBackend("fake-model", url, temperature=0.0, timeout=5.0, retries=0)
        with pytest.raises(InsightError, match="did not answer like an OpenAI-compatible chat API"):
            backend.complete([{"role": "user", "content": "hello"}], reader_schema(["NOOP"]), "a test prompt")


def test_a_dead_server_is_reported_at_once(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    with socket.socket() as closed:  # a free port: nothing listens there once it is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(InsightError, match=r"cannot reach the LLM server at \S+ \(Connection refused\)"):
        OpenAIBackend("fake-model", f"http://127.0.0.1:{port}/v1", temperature=0.0, timeout=60.0, retries=3)
    assert time.perf_counter() - started < 2.5  # the client's own retries with backoff took 3 s and more


def test_offline_explanation_meets_the_targets_on_catch(catch_run, tmp_path):
    result = run(ExplainConfig(checkpoint=catch_run, decisions=2, out=tmp_path, device="cpu"))
    check, document = result.faithfulness, result.document
    assert check["claims"] >= 6 and check["contradicted"] == 0 and check["disagreements"] == 0
    assert all(section["claims_from"] == "claims block" for section in document["policy"] + document["decisions"])
    score = check["simulatability"]
    assert score["accuracy"] >= 0.8 and score["chance"] == pytest.approx(1 / 3) and score["states"] >= 20
    assert len(document["simulation"]["states"]) == score["states"]
    assert {"values", "equations", "predicted", "answer"} <= set(document["simulation"]["states"][0])
    assert "logit_" not in document["simulation"]["first_prompt"]  # the reader does not see the equations
    assert check["counterfactuals"] == {"checked": 2, "confirmed": 2}
    assert document["decisions"][0]["counterfactual"]["variable"] == document["decisions"][0]["variables"][0]["name"]
    markdown = (tmp_path / "explanation.md").read_text()
    assert "## Simulatability" in markdown and "Counterfactual: " in markdown and "```json" not in markdown


def test_an_answer_cut_off_at_max_tokens_is_reported(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "cut", ("Explain the action RIGHT",))
    result = run(fake_llm(catch_run, server, tmp_path, decisions=0, simulate=0, max_tokens=100))
    assert [section["truncated"] for section in result.document["policy"]] == [False, True, False, False]
    assert result.faithfulness["truncated"] == 1 and FakeOpenAI.requests[0]["max_tokens"] == 100
    assert "at --max-tokens 100, or where the server's context ran out" in (tmp_path / "explanation.md").read_text()


def test_a_timed_out_request_is_not_sent_again_and_resume_continues(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "delay", 3.0)
    monkeypatch.setattr(FakeOpenAI, "slow", {2})  # the question about RIGHT
    config = fake_llm(catch_run, server, tmp_path, decisions=0, simulate=0, timeout=0.5, retries=3)
    with pytest.raises(InsightError, match=r"did not answer in time \(--timeout 0.5 s\).*--resume"):
        run(config)
    assert len(FakeOpenAI.requests) == 2  # no retry queued behind the request the server is still computing
    saved = json.loads((tmp_path / "explanation.partial.json").read_text())["replies"]
    assert [reply["question"].split(" (")[0] for reply in saved.values()] == ["Explain the action NOOP"]

    result = run(replace(config, resume=True))
    assert [len(r["messages"]) for r in FakeOpenAI.requests[2:]] == [4, 6, 8]  # NOOP's answer reused
    assert result.document["policy"][0]["answer"] == ANSWERS["Explain the action NOOP"]
    assert not (tmp_path / "explanation.partial.json").exists() and (tmp_path / "explanation.json").exists()


def test_a_server_failing_mid_dialogue_keeps_the_answers_so_far(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "broken_from", 2)
    config = fake_llm(catch_run, server, tmp_path, decisions=1, simulate=2, retries=1)
    with pytest.raises(InsightError, match="answered 500: the model crashed"):
        run(config)
    assert len(FakeOpenAI.requests) == 3 + 1  # the third question, and its one retry
    assert len(json.loads((tmp_path / "explanation.partial.json").read_text())["replies"]) == 2
    assert not (tmp_path / "explanation.json").exists()

    monkeypatch.setattr(FakeOpenAI, "broken_from", None)
    monkeypatch.setattr(FakeOpenAI, "requests", [])
    result = run(replace(config, resume=True))
    assert [len(r["messages"]) for r in FakeOpenAI.requests[:2]] == [6, 8] and len(FakeOpenAI.requests) == 2 + 1 + 2
    assert [s["action"] for s in result.document["policy"]] == ["NOOP", "RIGHT", "LEFT", None]
    assert result.faithfulness["simulatability"]["states"] == 2
    with pytest.raises(UsageError, match="--resume continues an LLM explanation"):
        run(replace(config, llm="offline", resume=True))


@pytest.mark.parametrize(
    ("refused", "formats", "output_format"),
    [
        # a server that takes no response_format: each form asked once, then (that question too) none
        ({"json_schema": 400, "json_object": 400}, ["json_schema", "json_object"] + [None] * 5, "fenced json block"),
        # llama-cpp-python 0.3.36: json_schema answered with a 500, json_object with the schema taken
        ({"json_schema": 500}, ["json_schema"] + ["json_object"] * 5, "response_format json_object with the schema"),
    ],
    ids=["no response_format", "llama.cpp"],
)
def test_the_claims_come_in_the_first_form_the_server_takes(
    catch_run, tmp_path, server, monkeypatch, refused, formats, output_format
):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "refused", refused)
    config = fake_llm(catch_run, server, tmp_path, decisions=0, simulate=1)
    result = run(replace(config, retries=0))
    assert [r.get("response_format", {}).get("type") for r in FakeOpenAI.requests] == formats
    assert result.document["output_format"] == output_format
    if "json_object" in formats:
        taken = FakeOpenAI.requests[formats.index("json_object")]["response_format"]
        assert taken["schema"]["required"] == ["answer", "claims"]


def test_a_prompt_over_the_context_budget_is_one_line_naming_it(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    with pytest.raises(
        InsightError,
        match=r"the policy prompt takes about [\d,]+ tokens, more than the 500 of "
        r"--context-tokens 600 left after 100 for the answer",
    ) as error:
        run(fake_llm(catch_run, server, tmp_path, decisions=0, context_tokens=600, max_tokens=100))
    assert FakeOpenAI.requests == [] and "\n" not in str(error.value)


def test_a_long_dialogue_leaves_out_its_oldest_exchanges(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "answers", {**ANSWERS, "Explain the action NOOP": "NOOP waits. " * 150})
    result = run(fake_llm(catch_run, server, tmp_path, decisions=0, simulate=0, context_tokens=1800, max_tokens=200))
    assert [section["left_out"] for section in result.document["policy"]][0] == 0
    assert max(section["left_out"] for section in result.document["policy"]) >= 1
    assert all(r["messages"][0]["role"] == "system" for r in FakeOpenAI.requests)
    assert "earliest exchanges of the dialogue" in (tmp_path / "explanation.md").read_text()


STRUCTURED = {  # a model that gives claims blocks; its prose about LEFT says the opposite of its block
    "Explain the action NOOP": 'NOOP is constant.\n```json\n{"claims": []}\n```',
    "Explain the action RIGHT": (
        'x_ball_4 raises the logit of RIGHT.\n```json\n{"claims": [{"variable": "x_ball_4", '
        '"action": "RIGHT", "direction": "raises"}]}\n```'
    ),
    "Explain the action LEFT": (
        'x_ball_4 raises the logit of LEFT.\n```json\n{"claims": [{"variable": "x_ball_4", '
        '"action": "LEFT", "direction": "lowers"}]}\n```'
    ),
    "Summarise": "The agent follows the ball.",
    "Decision": (
        'The paddle is what matters.\n```json\n{"claims": [{"variable": "x_paddle_4", "action": "LEFT", '
        '"direction": "raises", "state": 1}], "most_influential": "x_paddle_4"}\n```'
    ),
    "Predict": '{"action": "LEFT"}',
}


def test_claims_blocks_are_checked_and_the_prose_is_a_second_opinion(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(FakeOpenAI, "answers", STRUCTURED)
    result = run(fake_llm(catch_run, server, tmp_path, frame_index=5, simulate=4))
    policy = result.document["policy"]
    assert [s["claims_from"] for s in policy] == ["claims block"] * 3 + ["prose"]
    assert [(c["variable"], c["action"], c["direction"], c["verdict"]) for c in policy[2]["claims"]] == [
        ("x_ball_4", "LEFT", "lowers", "supported")
    ]
    assert policy[2]["disagreements"][0]["prose"] == "raises" and result.faithfulness["disagreements"] == 1
    decision = result.document["decisions"][0]
    assert decision["claims"][0]["source"] == "json" and decision["counterfactual"]["variable"] == "x_paddle_4"
    assert decision["counterfactual"]["verdict"] in ("confirmed", "refuted", "no change")
    assert all(state["predicted"] == "LEFT" for state in result.document["simulation"]["states"])
    assert "the prose says x_ball_4 raises LEFT" in (tmp_path / "explanation.md").read_text()


def test_zero_claims_checked_is_a_warning_not_a_success(catch_run, tmp_path, server, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(
        FakeOpenAI, "answers", {**{start: "The agent plays well." for start in ANSWERS}, "Predict": "NOOP"}
    )
    result = runner.invoke(
        app,
        [
            "explain",
            str(catch_run),
            "--llm",
            "fake-model",
            "--base-url",
            server,
            "--decisions",
            "0",
            "--simulate",
            "2",
            "--max-tokens",
            "300",
            "--context-tokens",
            "8000",
            "--out",
            str(tmp_path),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "faithfulness: 0 claims checked (no answer gave a claims block" in result.output
    assert "simulatability: " in result.output and "of 2 held-out states" in result.output
    assert "No claim could be checked" in (tmp_path / "explanation.md").read_text()
    assert FakeOpenAI.requests[0]["max_tokens"] == 300


def test_the_pipeline_passes_the_llm_options_to_explain_and_shows_simulatability(tmp_path, monkeypatch):
    import insight_cli.cli
    import insight_cli.evaluate.stage
    import insight_cli.explain.stage
    import insight_cli.extract_policy.stage
    import insight_cli.pretrain.stage
    import insight_cli.segment.stage
    import insight_cli.train.stage

    monkeypatch.chdir(tmp_path)
    seen = {}
    score = {"states": 40, "accuracy": 0.95, "chance": 1 / 3, "majority": 0.525, "majority_action": "RIGHT"}

    def explain(config):  # what the earlier stages and explain would leave behind
        seen["explain"] = config
        out = config.checkpoint.parent
        for actor in ("neural", "eql", "symbolic"):
            write_atomically(out / "evaluation" / f"{actor}.json", json.dumps({"mean": 0, "std": 0, "episodes": 1}))
        write_atomically(
            out / "policy.json", json.dumps({"terms": {"RIGHT": 2}, "fidelity": {"held_out_fidelity": 1.0}})
        )
        write_atomically(out / "explanation.json", json.dumps({"faithfulness": {"claims": 0, "simulatability": score}}))

    for module in (
        insight_cli.segment.stage,
        insight_cli.pretrain.stage,
        insight_cli.train.stage,
        insight_cli.extract_policy.stage,
        insight_cli.evaluate.stage,
    ):
        monkeypatch.setattr(module, "run", lambda config: None)
    monkeypatch.setattr(insight_cli.explain.stage, "run", explain)
    monkeypatch.setattr(insight_cli.cli.console, "width", 200)  # made at import: COLUMNS below may come too late
    result = runner.invoke(
        app,
        [
            "pipeline",
            "--game",
            "Catch",
            "--llm",
            "fake-model",
            "--base-url",
            "http://127.0.0.1:1/v1",
            "--timeout",
            "7",
            "--retries",
            "1",
            "--max-tokens",
            "99",
            "--context-tokens",
            "2048",
            "--device",
            "cpu",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    config = seen["explain"]
    assert (config.llm, config.base_url, config.timeout, config.retries, config.max_tokens, config.context_tokens) == (
        "fake-model",
        "http://127.0.0.1:1/v1",
        7.0,
        1,
        99,
        2048,
    )
    assert (
        "simulatability" in result.output
        and "95% of 40 held-out states (chance 33%, always RIGHT 52%)" in result.output
    )
    assert "0 claims checked" in result.output


@pytest.mark.llm
@pytest.mark.skipif(not os.environ.get("INSIGHT_LLM_BASE_URL"), reason="needs a local model: set INSIGHT_LLM_BASE_URL")
def test_a_real_local_model(catch_run, tmp_path):
    """benchmarks/explain_real_model.py against the server at INSIGHT_LLM_BASE_URL (see its docstring)."""
    script = Path(__file__).parents[2] / "benchmarks" / "explain_real_model.py"
    environment = {"OPENAI_API_KEY": "local", **os.environ}
    done = subprocess.run(
        [sys.executable, str(script), str(catch_run), "--out", str(tmp_path)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "simulatability" in done.stdout and (tmp_path / "explanation.json").exists()

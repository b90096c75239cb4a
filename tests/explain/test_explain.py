import json
import socket
import threading
import time
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import pytest
from support import toward_the_ball
from typer.testing import CliRunner

from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.explain.backends import OpenAIBackend
from insight_cli.explain.stage import ExplainConfig, run
from insight_cli.extract_policy.export import policy_document, write_exports
from insight_cli.extract_policy.symbolic import Interface, variables_for
from insight_cli.extract_policy.symbolic import extract as extract_policy

runner = CliRunner()

ANSWERS = {  # what the fake model says, by the start of the question
    "Explain the action NOOP": "NOOP is chosen when the ball is right above the paddle.",
    "Explain the action RIGHT": "x_ball_4 raises the logit of RIGHT, while x_paddle_4 lowers it.",
    "Explain the action LEFT": "x_ball_4 raises the logit of LEFT.",  # wrong: it lowers it
    "Summarise": "The agent moves the paddle toward the ball.",
    "In the current state": "The agent moved because the ball is away from the paddle.",
}


class FakeOpenAI(BaseHTTPRequestHandler):
    """Just enough of POST /v1/chat/completions: key 'good-key', model 'fake-model'; the first
    `failures` requests answer 503."""

    requests: list[dict] = []
    failures = 0
    delay = 0.0

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        time.sleep(type(self).delay)
        if type(self).failures:
            type(self).failures -= 1
            return self._send(503, {"error": {"message": "busy", "type": "server_error"}})
        if self.headers.get("Authorization") != "Bearer good-key":
            return self._send(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        if body["model"] != "fake-model":
            return self._send(404, {"error": {"message": "no such model", "type": "invalid_request_error"}})
        question = body["messages"][-1]["content"]
        answer = next(text for start, text in ANSWERS.items() if question.startswith(start))
        self._send(200, {
            "id": "fake", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

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
def server():
    FakeOpenAI.requests, FakeOpenAI.failures, FakeOpenAI.delay = [], 0, 0.0
    with serving(FakeOpenAI) as url:
        yield url


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
    FakeOpenAI.failures = 1  # the client retries with backoff
    result = run(ExplainConfig(checkpoint=catch_run, llm="fake-model", base_url=server, decisions=1, retries=2,
                               temperature=0.3, out=tmp_path, device="cpu"))
    requests = FakeOpenAI.requests[1:]
    assert len(requests) == 4 + 1  # three actions and the summary in one dialogue, then a decision
    assert [len(r["messages"]) for r in requests[:4]] == [2, 4, 6, 8]  # each answer is kept for the next
    assert requests[0]["messages"][0]["role"] == "system" and "logit_LEFT" in requests[0]["messages"][0]["content"]
    assert requests[0]["temperature"] == 0.3
    assert requests[4]["messages"][1]["content"].startswith("In the current state")
    check = result.faithfulness
    assert (check["supported"], check["contradicted"]) == (2, 1)
    assert check["problems"][0]["variable"] == "x_ball_4" and check["problems"][0]["action"] == "LEFT"
    assert "contradicted" in (tmp_path / "explanation.md").read_text()


@pytest.mark.parametrize("key, model, message", [
    (None, "fake-model", "OPENAI_API_KEY is not set"),
    ("bad-key", "fake-model", "refused the API key"),
    ("good-key", "gpt-9", "does not serve the model 'gpt-9'"),
])
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
    FakeOpenAI.delay = 2.0
    with pytest.raises(InsightError, match="did not answer in time"):
        run(ExplainConfig(checkpoint=catch_run, llm="fake-model", base_url=server, decisions=0, retries=0, timeout=0.3,
                          out=tmp_path))


def test_unreachable_server(catch_run, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    with pytest.raises(InsightError, match="cannot reach the LLM server"):
        run(ExplainConfig(checkpoint=catch_run, llm="fake-model", base_url="http://127.0.0.1:9/v1", decisions=0,
                          retries=0, out=tmp_path))


def test_cli(catch_run, tmp_path):
    result = runner.invoke(app, ["explain", str(catch_run), "--decisions", "1", "--show-prompts", "--out", str(tmp_path),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "faithfulness:" in result.output and "The policy gives every action a logit" in result.output
    result = runner.invoke(app, ["explain", str(catch_run), "--temperature", "5"])
    assert result.exit_code == 2


def test_a_policy_of_other_objects_is_refused(catch_run, tmp_path):
    objects, actions = ["ball", "paddle", "bullet"], ["NOOP", "RIGHT", "LEFT"]
    interface = Interface(variables_for(objects), actions)
    policy = extract_policy(toward_the_ball(objects, 0.0), interface, threshold=0.01, digits=3)
    write_exports(tmp_path, policy, policy_document(policy, "Catch", {}, objects, {"run": "other.ckpt", "fidelity": {},
                                                                                    "returns": {}}))
    result = runner.invoke(app, ["explain", str(catch_run), "--policy", str(tmp_path / "policy.json"), "--out",
                                 str(tmp_path / "out"), "--device", "cpu"])
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


@pytest.mark.parametrize("content_type, body", [
    ("application/json", b"{not json"),
    ("text/html", b"<html><body>It works!</body></html>"),
    ("application/json", b'{"choices": "x"}'),
])
def test_a_server_that_is_no_chat_api_is_one_line(monkeypatch, content_type, body):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    monkeypatch.setattr(NotAnApi, "content_type", content_type)
    monkeypatch.setattr(NotAnApi, "body", body)
    with serving(NotAnApi) as url:
        backend = OpenAIBackend("fake-model", url, temperature=0.0, timeout=5.0, retries=0)
        with pytest.raises(InsightError, match="did not answer like an OpenAI-compatible chat API"):
            backend.chat([{"role": "user", "content": "hello"}])


def test_a_dead_server_is_reported_at_once(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "good-key")
    with socket.socket() as closed:  # a free port: nothing listens there once it is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    started = time.perf_counter()
    with pytest.raises(InsightError, match=r"cannot reach the LLM server at \S+ \(Connection refused\)"):
        OpenAIBackend("fake-model", f"http://127.0.0.1:{port}/v1", temperature=0.0, timeout=60.0, retries=3)
    assert time.perf_counter() - started < 1  # the client's own retries with backoff took 3 s and more

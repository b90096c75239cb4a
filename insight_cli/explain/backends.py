"""Who writes the explanations: an LLM behind an OpenAI-compatible API, or the offline analyst
that writes the same sections, claims blocks included, from the equations and gradients
themselves. Both also read explanations back: the simulatability reader that predicts an action
from the explanation and one state."""

from __future__ import annotations

import os
import re
import socket
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass

import numpy as np

from insight_cli.errors import InsightError
from insight_cli.explain import CONTEXT_TOKENS, MAX_TOKENS, decision_list, structured
from insight_cli.explain.budget import TokenBudget
from insight_cli.explain.decisions import Decision
from insight_cli.explain.faithfulness import Statement
from insight_cli.explain.prompts import reader_state
from insight_cli.explain.transcript import Transcript
from insight_cli.extract_policy.symbolic import SymbolicPolicy

INFLUENTIAL = 3  # variables an offline explanation names per action
CONNECT_TIMEOUT = 5.0  # seconds: a live server accepts a connection in far less, even across the world
RETRY_BACKOFF = 0.5  # seconds before the first retry, doubling, at most MAX_BACKOFF
MAX_BACKOFF = 8.0
READER_TOKENS = 64  # a simulatability reader answers with one action name


@dataclass
class Reply:
    text: str
    truncated: bool = False  # the server stopped at --max-tokens (finish_reason "length")
    prompt_tokens: int | None = None  # as the server counted them, else as estimated; None offline
    estimated: bool = False  # prompt_tokens is an estimate
    left_out: int = 0  # earlier exchanges of the dialogue left out to fit --context-tokens


# response_format forms, best first: what the answer records as its output format, and the body
RESPONSE_FORMATS = {
    "json_schema": ("response_format json_schema", lambda schema: {"type": "json_schema", "json_schema": schema}),
    "json_object": (
        "response_format json_object with the schema",
        lambda schema: {"type": "json_object", "schema": schema["schema"]},
    ),
}


class OpenAIBackend:
    """Chat completions through the `openai` package: OPENAI_API_KEY, and OPENAI_BASE_URL (or
    --base-url) for any compatible server (vLLM, Ollama, llama.cpp). Every answer is at most
    `max_tokens` long (one that is cut off is reported), every prompt is fitted to
    `context_tokens`, and every answer goes into the transcript as it arrives. Connection errors,
    429 and 5xx are retried with exponential backoff; a timed-out request never is: a local server
    goes on computing it, so a retry would only queue behind it. A server that cannot be reached
    at all is reported at once. The claims come back under the response_format json_schema where
    the server takes one, else under json_object with the schema (llama.cpp's server takes that
    form and turns the schema into a grammar), else in the fenced block the prompts ask for."""

    def __init__(
        self,
        model: str,
        base_url: str | None,
        temperature: float,
        timeout: float,
        retries: int,
        max_tokens: int = MAX_TOKENS,
        context_tokens: int = CONTEXT_TOKENS,
        transcript: Transcript | None = None,
    ):
        import openai

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise InsightError(
                "--llm needs an API key: OPENAI_API_KEY is not set",
                hint="export OPENAI_API_KEY=... (any value for a local server that ignores keys), or use --llm offline",
            )
        self.openai = openai
        self.model, self.temperature, self.timeout, self.retries = model, temperature, timeout, retries
        self.max_tokens, self.budget, self.transcript = max_tokens, TokenBudget(context_tokens), transcript
        self.formats = list(RESPONSE_FORMATS)  # the response_formats not refused yet, best first
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.client = openai.OpenAI(
            api_key=key,
            base_url=self.base_url,
            max_retries=0,
            timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)),
        )
        self._check_reachable()

    @property
    def output_format(self) -> str:
        return RESPONSE_FORMATS[self.formats[0]][0] if self.formats else "fenced json block"

    def _check_reachable(self) -> None:
        """Connect once (through the proxy, if one applies): a dead server then fails in seconds,
        where the client would retry it with backoff, each try waiting out its connect timeout."""
        url, proxies = urllib.parse.urlsplit(self.base_url), urllib.request.getproxies()
        proxy = None if urllib.request.proxy_bypass(url.hostname or "") else proxies.get(url.scheme, proxies.get("all"))
        target = urllib.parse.urlsplit(proxy) if proxy else url
        try:
            if not target.hostname:
                raise ValueError("not a URL")
            port = target.port or (443 if target.scheme == "https" else 80)  # ValueError: a port that is no number
            socket.create_connection((target.hostname, port), timeout=CONNECT_TIMEOUT).close()
        except (OSError, ValueError) as error:
            raise self._unreachable(f" ({getattr(error, 'strerror', None) or error})") from None

    def _unreachable(self, reason: str = "") -> InsightError:
        return InsightError(
            f"cannot reach the LLM server at {self.base_url}{reason}",
            hint="check --base-url / OPENAI_BASE_URL and that the server runs",
        )

    def _not_an_api(self) -> InsightError:
        return InsightError(
            f"{self.base_url} did not answer like an OpenAI-compatible chat API",
            hint="check --base-url / OPENAI_BASE_URL: it usually ends in /v1",
        )

    def complete(self, messages: list[dict], schema: dict, what: str, max_tokens: int | None = None) -> Reply:
        """One answer to `messages`, fitted to the context (`what` names the prompt in errors):
        the saved one where the transcript has it."""
        max_tokens = min(max_tokens or self.max_tokens, self.max_tokens)
        key = Transcript.key(self.model, messages, schema["name"])
        saved = self.transcript.get(key) if self.transcript else None
        if saved:
            return Reply(**saved["reply"])
        fitted, left_out = self.budget.fit(messages, max_tokens, what)
        estimate = self.budget.estimate(fitted)
        try:
            response = self._create(fitted, schema, max_tokens)
        except self.openai.OpenAIError as error:
            raise self._explained(error, what, estimate) from None
        except ValueError:  # the body was not JSON
            raise self._not_an_api() from None
        reply = self._reply(response, fitted, estimate, left_out)
        if self.transcript:
            self.transcript.put(key, {"what": what, "question": messages[-1]["content"], "reply": asdict(reply)})
        return reply

    def _create(self, messages: list[dict], schema: dict, max_tokens: int):
        request = {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": max_tokens}
        openai = self.openai
        while self.formats:
            body = RESPONSE_FORMATS[self.formats[0]][1](schema)
            try:
                return self._send({**request, "response_format": body})
            except (openai.BadRequestError, openai.UnprocessableEntityError, openai.InternalServerError) as error:
                # llama.cpp's server answers a response_format it does not know with a 500
                if isinstance(error, openai.InternalServerError) and "response_format" not in str(error.message):
                    raise
                self.formats.pop(0)  # then the next form, and at last the fenced block the prompts ask for
        return self._send(request)

    def _send(self, request: dict):
        openai = self.openai
        for attempt in range(self.retries + 1):
            try:
                return self.client.chat.completions.create(**request)
            except openai.APITimeoutError:
                raise
            except (openai.APIConnectionError, openai.RateLimitError, openai.InternalServerError):
                if attempt == self.retries:
                    raise
                time.sleep(min(MAX_BACKOFF, RETRY_BACKOFF * 2**attempt))

    def _explained(self, error, what: str, prompt_tokens: int) -> InsightError:
        """A failed request as one line that says what to do."""
        openai, url = self.openai, self.base_url
        if isinstance(error, openai.APITimeoutError):
            return InsightError(
                f"{url} did not answer in time (--timeout {self.timeout:g} s) for {what}",
                hint="a local server may still be working on it: wait, then rerun with --resume; "
                "or raise --timeout, or lower --max-tokens",
            )
        if isinstance(error, openai.APIConnectionError):
            return self._unreachable()
        if isinstance(error, openai.AuthenticationError):
            return InsightError(f"{url} refused the API key", hint="check OPENAI_API_KEY")
        if isinstance(error, openai.NotFoundError):
            return InsightError(f"{url} does not serve the model {self.model!r}", hint="check --llm")
        message = re.sub(r"^Error code: \d+ - ", "", error.message) if isinstance(error, openai.APIStatusError) else ""
        if isinstance(error, (openai.BadRequestError, openai.UnprocessableEntityError)):
            return InsightError(
                f"{url} refused {what} (about {prompt_tokens:,} tokens): {error.status_code} {message}",
                hint=f"if the server's context is smaller than --context-tokens "
                f"{self.budget.context_tokens:,}, set --context-tokens to it",
            )
        if isinstance(error, openai.APIStatusError):
            return InsightError(
                f"{url} answered {error.status_code}: {message}", hint="rerun with --resume to keep the answers so far"
            )
        return InsightError(f"{url}: {error}")

    def _reply(self, response, messages: list[dict], estimate: int, left_out: int) -> Reply:
        try:  # the client passes on whatever a server sent: an HTML page, {"choices": "x"}
            choice = response.choices[0] if response.choices else None
            text = choice.message.content if choice is not None else None
            finish = getattr(choice, "finish_reason", None)
            counted = getattr(getattr(response, "usage", None), "prompt_tokens", None)
        except (AttributeError, IndexError, KeyError, TypeError):
            raise self._not_an_api() from None
        if not isinstance(text, str) or not text.strip():
            raise InsightError(
                f"{self.base_url} sent an empty answer for the model {self.model!r}",
                hint="raise --max-tokens" if finish == "length" else None,
            )
        counted = counted if isinstance(counted, int) and counted > 0 else None
        if counted:
            self.budget.measured(messages, counted)
        return Reply(text.strip(), finish == "length", counted or estimate, counted is None, left_out)

    def policy_dialogue(self, context: str, questions: list[str], schema: dict) -> list[Reply]:
        """The questions in order, in one conversation, each answer's prose kept for the next."""
        messages, replies = [{"role": "system", "content": context}], []
        for question in questions:
            messages.append({"role": "user", "content": question})
            replies.append(self.complete(messages, schema, "the policy prompt"))
            messages.append({"role": "assistant", "content": structured.prose(replies[-1].text)})
        return replies

    def decision(self, context: str, prompt: str, decision: Decision, number: int, schema: dict) -> Reply:
        messages = [{"role": "system", "content": context}, {"role": "user", "content": prompt}]
        return self.complete(messages, schema, f"the prompt of decision {number}")

    def predict(self, system: str, prompt: str, schema: dict) -> Reply:
        """A simulatability reader's answer: a fresh conversation that sees only `prompt`."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
        return self.complete(messages, schema, "a simulatability prompt", READER_TOKENS)


class OfflineAnalyst:
    """Deterministic explanations read off the equations: per action, the variables with the
    largest typical slope of its logit (or mean) over reference states, their signs and when the
    action is chosen (or high) in example states; for discrete actions a decision list of when each
    is chosen; per decision, the variables that move the action most there. Every answer ends
    with its claims block. As a simulatability reader it applies the decision list it finds in
    the explanation to the state it is shown."""

    output_format = "fenced json block"

    def __init__(self, policy: SymbolicPolicy, reference: np.ndarray, examples: np.ndarray):
        self.policy, self.reference = policy, reference  # (N, V) inputs: where slopes are read
        self.examples, self.chosen = examples, policy.choose(examples)  # (M, V): where choices are read

    def _when(self, action: int, ranked: list[int]) -> str:
        """When the equations choose the action (or set it high) in the example states."""
        policy, name = self.policy, self.policy.actions[action]
        if policy.continuous:
            values = self.chosen[:, action]
            selected = values > 0
            when = (
                f"Over the dataset's states {name} averages {values.mean():+.2f}, above 0 in {selected.mean():.0%} "
                "of them"
            )
        else:
            selected = self.chosen == action
            when = (
                f"The agent chooses {name} in {selected.mean() if len(selected) else 0.0:.0%} of the dataset's states"
            )
        if 0 < selected.mean() < 1 and ranked:
            contrasts = [
                f"{policy.variables[v].name} averages {self.examples[selected, v].mean():.2f} there against "
                f"{self.examples[~selected, v].mean():.2f} elsewhere"
                for v in ranked[:2]
            ]
            when += ("; where it is above 0, " if policy.continuous else ", typically when ") + " and ".join(contrasts)
        return when

    def _action(self, action: int, typical: np.ndarray) -> tuple[str, list[Statement]]:
        """typical: (V,) median slope of this action's logit (mean) over the reference states."""
        policy, name, kind = self.policy, self.policy.actions[action], self.policy.output
        ranked = [int(v) for v in np.argsort(-np.abs(typical)) if typical[v] != 0][:INFLUENTIAL]
        statements = [
            Statement("", policy.variables[v].name, name, "raises" if typical[v] > 0 else "lowers", "json")
            for v in ranked
        ]
        if not policy.terms[action]:
            influence = f"The {kind} of {name} is 0: no variable moves it."
        elif not ranked:
            influence = f"The {kind} of {name} is a constant, {policy.expressions[action]}."
        else:
            parts = [
                f"{s.variable} ({policy.variables[v].meaning}) {s.direction} the {kind} of {name} "
                f"(typical slope {typical[v]:+.3g})"
                for s, v in zip(statements, ranked)
            ]
            influence = "The most influential variables: " + "; ".join(parts) + "."
        return f"{influence} {self._when(action, ranked)}.", statements

    def _summary(self, typical: np.ndarray) -> tuple[str, list[Statement]]:
        policy, kind, statements = self.policy, self.policy.output, []
        for action, name in enumerate(policy.actions):
            if np.any(typical[action]):
                v = int(np.argmax(np.abs(typical[action])))
                statements.append(
                    Statement(
                        "", policy.variables[v].name, name, "raises" if typical[action, v] > 0 else "lowers", "json"
                    )
                )
        leading = [f"{s.action} follows {s.variable} ({s.direction} its {kind})" for s in statements]
        text = "In short: " + ("; ".join(leading) if leading else f"no variable moves any {kind}") + "."
        if not policy.continuous:
            text += "\n\n" + decision_list.render(*decision_list.learn(policy, self.examples, self.chosen))
        return text, statements

    def policy_dialogue(self, context: str, questions: list[str], schema: dict) -> list[Reply]:
        typical = np.median(self.policy.logit_gradients(self.reference), axis=0)  # (A, V) over (N, A, V)
        answers = [self._action(a, typical[a]) for a in range(len(self.policy.actions))] + [self._summary(typical)]
        return [Reply(structured.render(text, statements)) for text, statements in answers]

    def decision(self, context: str, prompt: str, decision: Decision, number: int, schema: dict) -> Reply:
        policy = self.policy
        if policy.continuous:
            lines = [f"The agent set {decision.summary(policy)}."]
        else:
            lines = [
                f"The agent took {policy.actions[decision.action]} with probability "
                f"{decision.probabilities[decision.action]:.2f}."
            ]
        statements = []
        for v in decision.relevant(policy)[:INFLUENTIAL]:
            action = decision.strongest(policy, v)
            gradient = decision.gradients[action, v]
            if gradient == 0:
                continue
            moved = policy.actions[action] if policy.continuous else f"the probability of {policy.actions[action]}"
            statements.append(
                Statement(
                    "",
                    policy.variables[v].name,
                    policy.actions[action],
                    "raises" if gradient > 0 else "lowers",
                    "json",
                    number,
                )
            )
            lines.append(
                f"Increasing {policy.variables[v].name} (now {decision.inputs[v]:.2f}) {statements[-1].direction} "
                f"{moved} (gradient {gradient:+.3g})."
            )
        most = statements[0].variable if statements else None
        return Reply(structured.render(" ".join(lines), statements, most))

    def predict(self, system: str, prompt: str, schema: dict) -> Reply:
        """The action the first rule of the explanation's decision list that holds in the
        prompt's state gives (nothing, where the explanation has no list)."""
        explanation, state = reader_state(prompt)
        rules, default = decision_list.read(explanation, self.policy.actions)
        return Reply(decision_list.apply(rules, default, state) or "")

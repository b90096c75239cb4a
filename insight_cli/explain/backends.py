"""Who writes the explanations: an LLM behind an OpenAI-compatible API, or the offline analyst
that writes the same sections from the equations and gradients themselves."""

from __future__ import annotations

import os
import socket
import urllib.parse
import urllib.request

import numpy as np

from insight_cli.errors import InsightError
from insight_cli.explain.prompts import Decision
from insight_cli.extract_policy.symbolic import SymbolicPolicy

INFLUENTIAL = 3  # variables an offline explanation names per action
CONNECT_TIMEOUT = 5.0  # seconds: a live server accepts a connection in far less, even across the world


class OpenAIBackend:
    """Chat completions through the `openai` package: OPENAI_API_KEY, and OPENAI_BASE_URL (or
    --base-url) for any compatible server (vLLM, Ollama, llama.cpp). The client retries
    connection errors, 408/409/429 and 5xx answers with exponential backoff; a server that
    cannot be reached at all is reported at once."""

    def __init__(self, model: str, base_url: str | None, temperature: float, timeout: float, retries: int):
        import openai

        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise InsightError(
                "--llm needs an API key: OPENAI_API_KEY is not set",
                hint="export OPENAI_API_KEY=... (any value for a local server that ignores keys), or use --llm offline",
            )
        self.openai = openai
        self.model, self.temperature = model, temperature
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        self.client = openai.OpenAI(api_key=key, base_url=self.base_url, max_retries=retries,
                                    timeout=openai.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT)))
        self._check_reachable()

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
        return InsightError(f"cannot reach the LLM server at {self.base_url}{reason}",
                            hint="check --base-url / OPENAI_BASE_URL and that the server runs")

    def chat(self, messages: list[dict]) -> str:
        openai = self.openai
        try:
            response = self.client.chat.completions.create(model=self.model, messages=messages, temperature=self.temperature)
        except openai.AuthenticationError:
            raise InsightError(f"{self.base_url} refused the API key", hint="check OPENAI_API_KEY") from None
        except openai.NotFoundError:
            raise InsightError(f"{self.base_url} does not serve the model {self.model!r}", hint="check --llm") from None
        except openai.APITimeoutError:
            raise InsightError(f"{self.base_url} did not answer in time", hint="raise --timeout, or try again") from None
        except openai.APIConnectionError:
            raise self._unreachable() from None
        except openai.APIStatusError as error:
            raise InsightError(f"{self.base_url} answered {error.status_code}: {error.message}") from None
        except ValueError:  # the body was not JSON
            raise self._not_an_api() from None
        try:  # the client passes on whatever a server sent: an HTML page, {"choices": "x"}
            text = response.choices[0].message.content if response.choices else None
        except (AttributeError, IndexError, KeyError, TypeError):
            raise self._not_an_api() from None
        if not isinstance(text, str) or not text.strip():
            raise InsightError(f"{self.base_url} sent an empty answer for the model {self.model!r}")
        return text.strip()

    def _not_an_api(self) -> InsightError:
        return InsightError(f"{self.base_url} did not answer like an OpenAI-compatible chat API",
                            hint="check --base-url / OPENAI_BASE_URL: it usually ends in /v1")

    def policy_dialogue(self, context: str, questions: list[str]) -> list[str]:
        """The questions in order, in one conversation, each answer kept for the next."""
        messages, answers = [{"role": "system", "content": context}], []
        for question in questions:
            messages.append({"role": "user", "content": question})
            answers.append(self.chat(messages))
            messages.append({"role": "assistant", "content": answers[-1]})
        return answers

    def decision(self, context: str, prompt: str, decision: Decision) -> str:
        return self.chat([{"role": "system", "content": context}, {"role": "user", "content": prompt}])


class OfflineAnalyst:
    """Deterministic explanations read off the equations: per action, the variables with the
    largest typical slope of its logit (or mean) over reference states, their signs and when the
    action is chosen (or high); per decision, the variables that move the action most there."""

    def __init__(self, policy: SymbolicPolicy, reference: np.ndarray):
        self.policy, self.reference = policy, reference  # reference: (N, V) inputs

    def _action(self, action: int, chosen: np.ndarray, typical: np.ndarray) -> str:
        """typical: (V,) median slope of this action's logit (mean) over the reference states."""
        policy, name = self.policy, self.policy.actions[action]
        kind = policy.output
        ranked = [v for v in np.argsort(-np.abs(typical)) if typical[v] != 0][:INFLUENTIAL]
        if not policy.terms[action]:
            influence = f"The {kind} of {name} is 0: no variable moves it."
        elif not ranked:
            influence = f"The {kind} of {name} is a constant, {policy.expressions[action]}."
        else:
            parts = [
                f"{policy.variables[v].name} ({policy.variables[v].meaning}) "
                f"{'raises' if typical[v] > 0 else 'lowers'} the {kind} of {name} (typical slope {typical[v]:+.3g})"
                for v in ranked
            ]
            influence = "The most influential variables: " + "; ".join(parts) + "."
        if policy.continuous:
            values = chosen[:, action]
            selected = values > 0
            when = f"Over the reference states {name} averages {values.mean():+.2f}, above 0 in {selected.mean():.0%} of them"
        else:
            selected = chosen == action
            when = f"The agent chooses {name} in {selected.mean() if len(chosen) else 0.0:.0%} of the reference states"
        if 0 < selected.mean() < 1 and ranked:
            inputs = self.reference.reshape(len(self.reference), -1)
            contrasts = []
            for v in ranked[:2]:
                inside, outside = inputs[selected, v].mean(), inputs[~selected, v].mean()
                contrasts.append(f"{policy.variables[v].name} averages {inside:.2f} there against {outside:.2f} elsewhere")
            when += ("; where it is above 0, " if policy.continuous else ", typically when ") + " and ".join(contrasts)
        return f"{influence} {when}."

    def policy_dialogue(self, context: str, questions: list[str]) -> list[str]:
        typical = np.median(self.policy.logit_gradients(self.reference), axis=0)  # (A, V) over (N, A, V)
        chosen = self.policy.choose(self.reference)
        answers = [self._action(a, chosen, typical[a]) for a in range(len(self.policy.actions))]
        kind = self.policy.output
        leading = []
        for action, name in enumerate(self.policy.actions):
            if np.any(typical[action]):
                v = int(np.argmax(np.abs(typical[action])))
                leading.append(f"{name} follows {self.policy.variables[v].name} "
                               f"({'raises' if typical[action, v] > 0 else 'lowers'} its {kind})")
        answers.append("In short: " + ("; ".join(leading) if leading else f"no variable moves any {kind}") + ".")
        return answers

    def decision(self, context: str, prompt: str, decision: Decision) -> str:
        policy = self.policy
        if policy.continuous:
            lines = [f"The agent set {decision.summary(policy)}."]
        else:
            lines = [f"The agent took {policy.actions[decision.action]} with probability "
                     f"{decision.probabilities[decision.action]:.2f}."]
        for v in decision.relevant(policy)[:INFLUENTIAL]:
            action = decision.strongest(policy, v)
            gradient = decision.gradients[action, v]
            if gradient == 0:
                continue
            moved = policy.actions[action] if policy.continuous else f"the probability of {policy.actions[action]}"
            lines.append(
                f"Increasing {policy.variables[v].name} (now {decision.inputs[v]:.2f}) {'raises' if gradient > 0 else 'lowers'} "
                f"{moved} (gradient {gradient:+.3g})."
            )
        return " ".join(lines)

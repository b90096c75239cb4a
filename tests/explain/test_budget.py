import pytest

from insight_cli.errors import InsightError
from insight_cli.explain.budget import TokenBudget


def dialogue(turns: int, size: int = 300) -> list[dict]:
    messages = [{"role": "system", "content": "s" * size}]
    for _ in range(turns):
        messages += [{"role": "user", "content": "q" * size}, {"role": "assistant", "content": "a" * size}]
    return messages + [{"role": "user", "content": "last question"}]


def test_the_oldest_exchanges_are_left_out_to_fit():
    budget = TokenBudget(context_tokens=700)
    fitted, left_out = budget.fit(dialogue(3), max_tokens=200, what="the policy prompt")
    assert left_out == 2 and fitted[0]["role"] == "system" and fitted[-1]["content"] == "last question"
    assert budget.estimate(fitted) <= 500 < budget.estimate(dialogue(3)[:1] + dialogue(3)[3:])


def test_a_prompt_that_cannot_fit_names_the_budget():
    with pytest.raises(
        InsightError,
        match=r"the policy prompt takes about 1,\d{3} tokens, more than the 312 of "
        r"--context-tokens 512 left after 200 for the answer",
    ):
        TokenBudget(512).fit(dialogue(0, size=3000), max_tokens=200, what="the policy prompt")


def test_the_servers_count_makes_the_estimate_only_more_cautious():
    budget, messages = TokenBudget(4096), dialogue(0)
    estimate = budget.estimate(messages)
    budget.measured(messages, prompt_tokens=10)  # a server that counts fewer: ignored
    assert budget.estimate(messages) == estimate
    budget.measured(messages, prompt_tokens=2 * estimate)
    assert budget.estimate(messages) >= 2 * estimate - 8

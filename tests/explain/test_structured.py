import json

from insight_cli.explain.faithfulness import Statement
from insight_cli.explain.structured import named_action, parse, render, schema

ACTIONS = ["NOOP", "RIGHT", "LEFT"]


def claims(found):
    return [(s.variable, s.action, s.direction, s.state) for s in found.statements]


def test_a_good_block_reads_completely_and_leaves_the_prose():
    text = (
        'x_ball_4 raises RIGHT.\n\n```json\n{"claims": [{"variable": "x_ball_4", "action": "RIGHT", "direction": '
        '"raises", "state": 2}], "most_influential": "x_ball_4"}\n```'
    )
    found = parse(text, ACTIONS)
    assert found.status == "complete" and found.prose == "x_ball_4 raises RIGHT." and found.problems == []
    assert claims(found) == [("x_ball_4", "RIGHT", "raises", 2)] and found.most_influential == "x_ball_4"


def test_the_offline_analysts_rendering_reads_back():
    statements = [Statement("", "x_ball_4", "LEFT", "lowers", "json", 1)]
    found = parse(render("Some prose.", statements, "x_ball_4"), ACTIONS)
    assert claims(found) == [("x_ball_4", "LEFT", "lowers", 1)] and found.prose == "Some prose."


def test_a_block_cut_off_keeps_its_whole_claims():
    text = (
        'Prose.\n```json\n{"claims": [{"variable": "x_ball_4", "action": "RIGHT", "direction": "raises"}, '
        '{"variable": "x_pad'
    )
    found = parse(text, ACTIONS)
    assert found.status == "partial" and claims(found) == [("x_ball_4", "RIGHT", "raises", None)]
    assert "not valid JSON" in found.problems[0] and found.prose == "Prose."


def test_unreadable_entries_are_reported_and_the_rest_kept():
    text = json.dumps(
        {
            "answer": "The ball leads.",
            "claims": [
                {"variable": "x_ball_4", "action": "right", "direction": "increases"},
                {"variable": "x_ball_4", "action": "JUMP", "direction": "raises"},
                {"variable": "x_paddle_4", "action": "LEFT", "direction": "affects"},
            ],
        }
    )
    found = parse(text, ACTIONS)  # the whole answer is the object: a server that enforced the schema
    assert found.prose == "The ball leads." and claims(found) == [("x_ball_4", "RIGHT", "raises", None)]
    assert found.status == "partial" and len(found.problems) == 2
    assert "no action of this game" in found.problems[0] and "not raises or lowers" in found.problems[1]


def test_malformed_and_missing_blocks_give_no_claims():
    malformed = parse("Prose.\n```json\n{claims: [x_ball_4 raises RIGHT]}\n```", ACTIONS)
    assert malformed.status == "malformed" and not malformed.read and malformed.statements == []
    assert parse('```json\n{"claim": []}\n```', ACTIONS).status == "malformed"
    missing = parse("Only prose about x_ball_4.", ACTIONS)
    assert missing.status == "missing" and missing.prose == "Only prose about x_ball_4."


def test_an_empty_claims_list_is_a_claim_of_none():
    found = parse('NOOP is constant.\n```json\n{"claims": []}\n```', ACTIONS, "NOOP")
    assert found.read and found.statements == []


def test_a_missing_action_is_the_sections():
    found = parse('```json\n{"claims": [{"variable": "x_ball_4", "direction": "lowers"}]}\n```', ACTIONS, "LEFT")
    assert claims(found) == [("x_ball_4", "LEFT", "lowers", None)]


def test_the_schema_names_actions_directions_and_for_decisions_the_state():
    policy, decision = schema(ACTIONS, decision=False)["schema"], schema(ACTIONS, decision=True)["schema"]
    item = decision["properties"]["claims"]["items"]["properties"]
    assert item["action"]["enum"] == ACTIONS and item["direction"]["enum"] == ["raises", "lowers"] and "state" in item
    assert "most_influential" in decision["required"] and "most_influential" not in policy["properties"]


def test_a_readers_action():
    assert named_action('{"action": "LEFT"}', ACTIONS) == "LEFT"
    assert named_action("The agent takes Right here.", ACTIONS) == "RIGHT"
    assert named_action("I cannot tell.", ACTIONS) is None

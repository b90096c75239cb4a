"""Every LLM answer saved as it arrives (explanation.partial.json), so a run that fails keeps what
was done and `insight explain --resume` asks only what is still missing. Answers are keyed by the
model and the whole request, so one asked differently (another policy, state or question) is
asked again, never reused wrongly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from insight_cli.errors import InsightError
from insight_cli.files import write_atomically

PARTIAL = "explanation.partial.json"


class Transcript:
    def __init__(self, path: Path, resume: bool):
        self.path, self.replies, self.reused = Path(path), {}, 0
        if resume and self.path.exists():
            try:
                self.replies = json.loads(self.path.read_text())["replies"]
            except (ValueError, KeyError, TypeError):
                raise InsightError(
                    f"cannot resume: {self.path} is not a saved explanation", hint="run without --resume to start over"
                ) from None

    @staticmethod
    def key(model: str, messages: list[dict], schema: str) -> str:
        return hashlib.sha256(json.dumps([model, messages, schema]).encode()).hexdigest()

    def get(self, key: str) -> dict | None:
        saved = self.replies.get(key)
        self.reused += saved is not None
        return saved

    def put(self, key: str, reply: dict) -> None:
        self.replies[key] = reply
        write_atomically(self.path, json.dumps({"replies": self.replies}, indent=1))

    def finish(self) -> None:
        """The explanation is written: nothing is left to resume."""
        self.path.unlink(missing_ok=True)

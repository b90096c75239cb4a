"""`insight evaluate`'s options (no heavy imports: the CLI reads them at start)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from insight_cli.errors import UsageError
from insight_cli.options import check_bounds, device_option, option, seed_option

ACTORS = ("neural", "eql", "symbolic")


@dataclass
class EvaluateConfig:
    checkpoint: Path = option(help="A run.ckpt from `insight train`.", argument=True)
    actor: str = option(
        "eql",
        "Who plays: the neural actor, the EQL actor, or the extracted equations (policy.json) on the predicted "
        "coordinates.",
        choices=ACTORS,
    )
    episodes: int = option(
        10, "Full episodes to play (eval protocol: up to 30 no-ops at the start, 108k frames at most).", min=1
    )
    policy: Path | None = option(None, "policy.json for --actor symbolic (default: the one next to the run).")
    video: bool = option(False, "Also write an mp4 of one episode with the predicted objects drawn.")
    video_steps: int = option(3000, "Agent steps (4 frames each) at most in the video.", min=1)
    num_envs: int = option(8, "Episodes played at once.", min=1)
    out: Path | None = option(None, "Output directory (default: <run>/evaluation).")
    device: str = device_option()
    seed: int = seed_option()

    def validate(self) -> None:
        check_bounds(self)
        if self.policy is not None and self.actor != "symbolic":
            raise UsageError(
                "--policy is the policy.json whose equations --actor symbolic plays; it needs --actor symbolic"
            )

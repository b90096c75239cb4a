"""The `simulator` backend: a simulator that knows where its objects are (MetaDrive) reports
them, so nothing has to be found in pixels. Vehicle slots are ranks, not identities: `ego`, then
`vehicle1` for the nearest other car, `vehicle2` for the next, ... (what a driving policy reads);
`road_left` and `road_right` mark the edges of the ego's side of the road."""

from __future__ import annotations

from collections import Counter

import numpy as np

from insight_cli.envs.metadrive import VEHICLE_RGB
from insight_cli.segment.detections import Detections


class SimulatorObjects:
    def __init__(self, overrides: dict[str, str] | None = None):
        self.overrides = overrides or {}
        self._seen: Counter[str] = Counter()

    @staticmethod
    def _track_id(name: str) -> int:
        fixed = {"ego": 0, "road_left": 1, "road_right": 2}
        return fixed[name] if name in fixed else len(fixed) - 1 + int(name.removeprefix("vehicle"))

    def label(self, objects) -> tuple[Detections, np.ndarray, list[str]]:
        """The simulator's object boxes of one frame -> detections, track ids and names."""
        if not objects:
            return Detections.empty(), np.zeros(0, np.int64), []
        edges = np.array([box for _, box in objects])
        boxes = np.concatenate([np.floor(edges[:, :2]), np.ceil(edges[:, 2:])], axis=1).astype(np.int32)
        areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).astype(np.int32)
        colors = np.tile(np.array(VEHICLE_RGB, np.uint8), (len(objects), 1))
        names = [name for name, _ in objects]
        self._seen.update(names)
        track_ids = np.array([self._track_id(name) for name in names])
        return Detections(boxes, areas, colors), track_ids, [self.overrides.get(name, name) for name in names]

    def catalogue(self, total_frames: int) -> list[dict]:
        return [
            {
                "track_id": self._track_id(name),
                "name": self.overrides.get(name, name),
                "color": list(VEHICLE_RGB),
                "frames_seen": count,
                "seen_fraction": round(count / max(total_frames, 1), 4),
            }
            for name, count in sorted(self._seen.items(), key=lambda item: self._track_id(item[0]))
        ]

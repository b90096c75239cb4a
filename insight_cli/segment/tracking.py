"""Persistent object ids across frames.

Detections are grouped by what they are: a catalogued object name, else their colour. A
catalogued object that appears once at most (the ball, the player) keeps one id for the whole
dataset. Other groups are matched frame to frame by the Hungarian method on centre distance
plus size change; a detection with no match within the gate starts a new track, and a track
missing for more than `max_missing` frames is retired: its id is never given out again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from insight_cli.games import GameSpec
from insight_cli.segment.detections import Detections
from insight_cli.segment.naming import match_object

UNMATCHED = 1e9


@dataclass
class Track:
    track_id: int
    name: str
    center: np.ndarray  # (2,) x, y in pixels
    size: np.ndarray  # (2,) width, height in pixels
    color: tuple[int, int, int]
    frames_seen: int = 0
    missing: int = 0


@dataclass
class Tracker:
    game: GameSpec
    max_missing: int = 15  # frames; covers Atari flicker and short occlusions
    gate: float = 16.0  # pixels a track may move between frames, plus its own size
    overrides: dict[str, str] = field(default_factory=dict)  # default name -> user's name

    def __post_init__(self) -> None:
        self.tracks: list[Track] = []  # every track ever made; index = track_id
        self._singletons: dict[str, Track] = {}  # catalogued name -> its one track, never retired
        self._active: dict[str, list[Track]] = {}  # group -> live tracks
        self._instances: dict[str, int] = {}  # catalogued name -> instances named so far

    def update(self, detections: Detections, frame_shape: tuple[int, int]) -> tuple[np.ndarray, list[str]]:
        """Assign a track to every detection of one frame; returns (M,) track ids and names."""
        singles: dict[str, list[int]] = {}
        groups: dict[str, list[int]] = {}
        for index, (box, color) in enumerate(zip(detections.boxes, detections.colors)):
            spec = match_object(self.game, tuple(box), tuple(color), frame_shape)
            if spec is not None and spec.max_count == 1:
                singles.setdefault(spec.name, []).append(index)
            else:
                groups.setdefault(spec.name if spec else _color_group(color), []).append(index)
        centers = detections.centers
        sizes = (detections.boxes[:, 2:] - detections.boxes[:, :2]).astype(float)
        assigned: dict[int, Track] = {}
        for name, members in singles.items():
            track = self._singletons.get(name)
            if track is None:
                chosen = members[0]
                track = self._singletons[name] = self._new_track(name, detections.colors[chosen])
            else:
                chosen = members[int(np.argmin(np.linalg.norm(centers[members] - track.center, axis=1)))]
            assigned[chosen] = track
            for extra in members:  # more than one: the others are something else of that colour
                if extra != chosen:
                    groups.setdefault(_color_group(detections.colors[extra]), []).append(extra)
        for group, members in groups.items():
            live = self._active.setdefault(group, [])
            for member, track in zip(members, self._match(live, centers[members], sizes[members])):
                if track is None:
                    track = self._new_track(group, detections.colors[member])
                    live.append(track)
                assigned[member] = track
        track_ids = np.full(len(detections), -1, dtype=np.int64)
        for member, track in assigned.items():
            track.center, track.size = centers[member], sizes[member]
            track.frames_seen += 1
            track.missing = -1  # the sweep below makes it 0
            track_ids[member] = track.track_id
        self._retire_missing()
        return track_ids, [self.tracks[track_id].name for track_id in track_ids]

    def _match(self, live: list[Track], centers: np.ndarray, sizes: np.ndarray) -> list[Track | None]:
        """For each detection of a group, the live track it continues, or None."""
        matched: list[Track | None] = [None] * len(centers)
        if not live:
            return matched
        track_centers = np.array([track.center for track in live])
        track_sizes = np.array([track.size for track in live])
        distance = np.linalg.norm(centers[:, None] - track_centers[None], axis=-1)
        cost = distance + np.abs(sizes[:, None] - track_sizes[None]).sum(axis=-1)
        reach = self.gate + np.maximum(sizes[:, None], track_sizes[None]).max(axis=-1)
        cost[distance > reach] = UNMATCHED
        for row, col in zip(*linear_sum_assignment(cost)):
            if cost[row, col] < UNMATCHED:
                matched[row] = live[col]
        return matched

    def _new_track(self, group: str, color: np.ndarray) -> Track:
        track_id = len(self.tracks)
        if group in self._singleton_names:
            name = group
        elif group.startswith("#"):
            name = f"obj{track_id}"
        else:
            self._instances[group] = self._instances.get(group, 0) + 1
            name = f"{group}{self._instances[group]}"
        color = tuple(int(c) for c in color)
        track = Track(track_id, self.overrides.get(name, name), np.zeros(2), np.zeros(2), color)
        self.tracks.append(track)
        return track

    @property
    def _singleton_names(self) -> set[str]:
        return {obj.name for obj in self.game.objects if obj.max_count == 1}

    def _retire_missing(self) -> None:
        for track in self._singletons.values():
            track.missing += 1
        for group, live in self._active.items():
            for track in live:
                track.missing += 1
            self._active[group] = [track for track in live if track.missing <= self.max_missing]

    def catalogue(self, total_frames: int) -> list[dict]:
        """Every track: id, name, colour and how often it was seen."""
        return [
            {
                "track_id": track.track_id,
                "name": track.name,
                "color": list(track.color),
                "frames_seen": track.frames_seen,
                "seen_fraction": round(track.frames_seen / max(total_frames, 1), 4),
            }
            for track in self.tracks
        ]


def _color_group(color) -> str:
    return "#%02x%02x%02x" % tuple(int(c) for c in color)

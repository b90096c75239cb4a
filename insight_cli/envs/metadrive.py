"""MetaDrive seen from above: the driving task as insight's stages see it.

The observation is MetaDrive's top-down (bird's-eye) view, 84x84 around the ego car with its
heading up (2 pixels a metre, so 42 m x 42 m), drawn with the semantic palette (road, lines and
vehicles each one colour), stacked 4 deep like Atari; next to it the ego state (19 values in
[0, 1]: distances to the road edges, heading, speed, last action, yaw rate, lane offset,
navigation). The action is continuous: (steering, throttle), each in [-1, 1]; positive steering
turns left, negative throttle brakes.

The top-down renderer and the state observation need none of MetaDrive's 3-D assets, so
insight never asks MetaDrive to fetch them (it would try at the first reset and fail offline).
MetaDrive allows one simulator per process: the vector env runs each env in a subprocess, so 8
envs use 8 cores; segment's frame source runs one in this process. Training and evaluation
envs are the same (no lives to lose, no rewards to clip).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import multiprocessing as mp
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from insight_cli.envs.base import Frame, StepResult, env_seeds
from insight_cli.envs.preprocessing import FRAME_SIZE, STACK, gray_view
from insight_cli.errors import InsightError
from insight_cli.games import METADRIVE

PIXELS_PER_METRE = 2.0
STATE_SIZE = len(METADRIVE.state)  # MetaDrive's state observation, named in the catalogue
VEHICLE_RGB = (224, 177, 67)  # every vehicle, the ego included, in the semantic palette
SCENARIOS = 1000  # maps (PG scenarios) seeds cycle through
TRAFFIC_DENSITY = 0.2  # MetaDrive's default 0.1 leaves few cars in view
HORIZON = 1000  # steps of 0.1 s before an episode is cut off
ASSET_HINT = (
    "`python -m metadrive.pull_asset` fetches them (or unzip MetaDrive's assets.zip into <site-packages>/metadrive/)"
)
_RENDER = dict(
    mode="topdown",
    window=False,
    screen_size=(FRAME_SIZE, FRAME_SIZE),
    scaling=PIXELS_PER_METRE,
    film_size=(2000, 2000),
    target_agent_heading_up=True,
    num_stack=1,
    draw_contour=False,
    semantic_map=True,
)


def asset_status() -> str:
    """ "ok", "missing", "outdated" or "not-installed", without importing metadrive (slow).
    Only 3-D rendering (the RGB camera) needs the assets; the top-down view does not."""
    spec = importlib.util.find_spec("metadrive")
    if spec is None or spec.origin is None:
        return "not-installed"
    version_file = Path(spec.origin).parent / "assets" / "version.txt"
    if not version_file.is_file():
        return "missing"
    written = version_file.read_text().strip().replace(" ", "")
    return "ok" if written == importlib.metadata.version("metadrive-simulator") else "outdated"


def require_metadrive() -> None:
    if asset_status() == "not-installed":
        raise InsightError("MetaDrive is not installed", hint="pip install metadrive-simulator")


class ObjectBox(NamedTuple):
    name: str  # "ego", "road_left", "road_right", then "vehicle1", "vehicle2", ... nearest first
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in view pixels


class Observation(NamedTuple):
    rgb: np.ndarray  # (84, 84, 3) uint8 top-down view
    state: np.ndarray  # (19,) float32 ego state
    objects: list[ObjectBox]  # the vehicles and road edges in view


class Drive:
    """One MetaDrive env in this process, headless. `expert=True` lets MetaDrive's IDM policy
    drive the ego (for collecting frames); the actions it took are then in `last_action`."""

    def __init__(self, expert: bool = False):
        require_metadrive()
        os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
        from metadrive.engine.base_engine import BaseEngine
        from metadrive.envs import MetaDriveEnv
        from metadrive.obs.state_obs import StateObservation

        BaseEngine.try_pull_asset = staticmethod(lambda: None)  # headless: the assets are never needed
        config = dict(
            log_level=50,
            use_render=False,
            image_observation=False,
            num_scenarios=SCENARIOS,
            start_seed=0,
            traffic_density=TRAFFIC_DENSITY,
            horizon=HORIZON,
            force_destroy=True,
            agent_observation=StateObservation,
            vehicle_config=dict(lidar=dict(num_lasers=0, distance=0)),
        )
        if expert:
            from metadrive.policy.idm_policy import IDMPolicy

            config["agent_policy"] = IDMPolicy
        self._env = MetaDriveEnv(config)
        self.last_action = np.zeros(2, np.float32)

    def reset(self, seed: int) -> Observation:
        state, _ = self._env.reset(seed=seed % SCENARIOS)
        return self._observe(state)

    def step(self, action: np.ndarray) -> tuple[Observation, float, bool, bool, bool]:
        """-> observation, reward, terminated, truncated, arrived (reached the destination)."""
        state, reward, terminated, truncated, info = self._env.step(np.asarray(action, np.float32))
        self.last_action = np.asarray(info.get("action", action), np.float32)
        return self._observe(state), float(reward), bool(terminated), bool(truncated), bool(info.get("arrive_dest"))

    def _observe(self, state: np.ndarray) -> Observation:
        rgb = np.ascontiguousarray(self._env.render(**_RENDER))
        if self._env.top_down_renderer.scaling != PIXELS_PER_METRE:  # MetaDrive shrinks it for huge maps
            raise InsightError("MetaDrive's map is too large for the top-down view", hint="use the default map size")
        return Observation(rgb, np.asarray(state, np.float32), self._objects())

    def _objects(self) -> list[ObjectBox]:
        from metadrive.component.vehicle.base_vehicle import BaseVehicle

        ego = self._env.agent
        found = []
        for vehicle in self._env.engine.get_objects(lambda o: isinstance(o, BaseVehicle)).values():
            length, width, heading = vehicle.top_down_length, vehicle.top_down_width, vehicle.heading_theta
            corners = np.array([[length, width], [length, -width], [-length, -width], [-length, width]]) / 2
            rotation = np.array([[np.cos(heading), -np.sin(heading)], [np.sin(heading), np.cos(heading)]])
            pixels = _view_pixels(corners @ rotation.T + np.asarray(vehicle.position), ego)
            (x0, y0), (x1, y1) = pixels.min(axis=0), pixels.max(axis=0)
            if x1 <= 0 or y1 <= 0 or x0 >= FRAME_SIZE or y0 >= FRAME_SIZE:
                continue
            distance = float(np.hypot(*(np.asarray(vehicle.position) - np.asarray(ego.position))))
            box = (max(0.0, x0), max(0.0, y0), min(float(FRAME_SIZE), x1), min(float(FRAME_SIZE), y1))
            found.append((vehicle is not ego, distance, box))
        found.sort(key=lambda item: item[:2])  # the ego first, then the others nearest first
        vehicles = [ObjectBox("ego" if rank == 0 else f"vehicle{rank}", box) for rank, (_, _, box) in enumerate(found)]
        return vehicles[:1] + self._road_edges(ego) + vehicles[1:]

    @staticmethod
    def _road_edges(ego) -> list[ObjectBox]:
        """The edges of the ego's side of the road level with it (left: usually the centre line),
        as small boxes on the ego's row, where they are in view."""
        centre, edges = FRAME_SIZE / 2, []
        for name, x in (
            ("road_left", centre - ego.dist_to_left_side * PIXELS_PER_METRE),
            ("road_right", centre + ego.dist_to_right_side * PIXELS_PER_METRE),
        ):
            if 1 <= x <= FRAME_SIZE - 1:
                edges.append(ObjectBox(name, (float(x) - 1, centre - 2, float(x) + 1, centre + 2)))
        return edges

    def close(self) -> None:
        self._env.close()


def _view_pixels(points: np.ndarray, ego) -> np.ndarray:
    """World points (..., 2) in metres -> (..., 2) view pixels (x right, y down), ego heading up."""
    offset = points - np.asarray(ego.position)
    cos, sin = np.cos(ego.heading_theta), np.sin(ego.heading_theta)
    forward = offset[..., 0] * cos + offset[..., 1] * sin
    left = -offset[..., 0] * sin + offset[..., 1] * cos
    centre = FRAME_SIZE / 2
    return np.stack([centre - left * PIXELS_PER_METRE, centre - forward * PIXELS_PER_METRE], axis=-1)


def first_stack(frame: np.ndarray) -> np.ndarray:
    """An episode's first observation: zeros, then its first frame (as for every game)."""
    stack = np.zeros((STACK, *frame.shape), np.uint8)
    stack[-1] = frame
    return stack


def pushed(stack: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """The stack with its oldest frame dropped and `frame` added as the newest."""
    return np.concatenate([stack[1:], frame[None]])


class MetaDriveFrameSource:
    """One MetaDrive env stepped one action at a time: the top-down RGB view next to the
    training view, the ego state and the simulator's vehicle boxes. With `expert`, MetaDrive's
    IDM policy drives (actions are ignored; what it did is in `last_action`)."""

    def __init__(self, seed: int, action_meanings: list[str], expert: bool = False):
        self.seed = seed
        self.action_meanings = action_meanings
        self._drive = Drive(expert=expert)
        self._episode = 0
        self._stack = np.zeros((STACK, FRAME_SIZE, FRAME_SIZE), np.uint8)
        self.objects: list[ObjectBox] = []
        self.ego_state = np.zeros(STATE_SIZE, np.float32)

    def reset(self, seed: int | None = None) -> Frame:
        self._episode = 0
        return self._start(self.seed if seed is None else seed)

    def _start(self, seed: int) -> Frame:
        observation = self._drive.reset(seed)
        self._stack = first_stack(gray_view(observation.rgb))
        self.objects, self.ego_state = observation.objects, observation.state
        return Frame(observation.rgb, self._stack.copy())

    def step(self, action: np.ndarray | None) -> tuple[Frame, float, bool]:
        observation, reward, terminated, truncated, _ = self._drive.step(np.zeros(2) if action is None else action)
        if terminated or truncated:
            self._episode += 1
            return self._start(self.seed + self._episode), reward, True
        self._stack = pushed(self._stack, gray_view(observation.rgb))
        self.objects, self.ego_state = observation.objects, observation.state
        return Frame(observation.rgb, self._stack.copy()), reward, False

    @property
    def last_action(self) -> np.ndarray:
        return self._drive.last_action

    def close(self) -> None:
        self._drive.close()


def _worker(connection) -> None:
    drive = Drive()
    try:
        while True:
            command, argument = connection.recv()
            if command == "reset":
                connection.send(drive.reset(argument)[:2])
            elif command == "step":
                observation, *outcome = drive.step(argument)
                connection.send((observation[:2], *outcome))
            else:
                break
    finally:
        drive.close()
        connection.close()


class MetaDriveVectorEnv:
    """N MetaDrive envs, each in its own process; observations (N, 4, 84, 84) uint8, the ego
    states in `ego_state` (N, 19), and `arrived` (N,) marks envs whose episode just ended at
    the destination. Env i plays maps seed + i, seed + i + N, ... (reset in the step that ends
    an episode)."""

    def __init__(self, num_envs: int, seed: int, action_meanings: list[str]):
        require_metadrive()
        self.num_envs = num_envs
        self.seed = seed
        self.action_meanings = action_meanings
        context = mp.get_context("spawn")  # MetaDrive's engine must not be forked
        self._connections, self._processes = [], []
        for index in range(num_envs):
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child,), daemon=True)
            process.start()
            child.close()
            self._connections.append(parent)
            self._processes.append(process)
        self._episodes = np.zeros(num_envs, np.int64)
        self._first_maps = env_seeds(seed, num_envs)  # env i's map in its episode k: this + N k
        self._stack = np.zeros((num_envs, STACK, FRAME_SIZE, FRAME_SIZE), np.uint8)
        self.ego_state = np.zeros((num_envs, STATE_SIZE), np.float32)
        self.arrived = np.zeros(num_envs, bool)

    def _map(self, index: int) -> int:
        return int(self._first_maps[index]) + self.num_envs * int(self._episodes[index])

    def _start(self, index: int, rgb: np.ndarray, state: np.ndarray) -> None:
        self._stack[index] = first_stack(gray_view(rgb))
        self.ego_state[index] = state

    def reset(self, seed: int | Sequence[int] | None = None) -> np.ndarray:
        self._first_maps = env_seeds(self.seed if seed is None else seed, self.num_envs)
        self._episodes[:] = 0
        for index, connection in enumerate(self._connections):
            _send(connection, ("reset", self._map(index)))
        for index, connection in enumerate(self._connections):
            self._start(index, *_receive(connection))
        self.arrived[:] = False
        return self._stack.copy()

    def step(self, actions: np.ndarray) -> StepResult:
        actions = np.asarray(actions, np.float32).reshape(self.num_envs, 2)
        for connection, action in zip(self._connections, actions):
            _send(connection, ("step", action))
        reward = np.zeros(self.num_envs, np.float32)
        terminated, truncated = np.zeros(self.num_envs, bool), np.zeros(self.num_envs, bool)
        finished = []
        for index, connection in enumerate(self._connections):
            (rgb, state), reward[index], terminated[index], truncated[index], self.arrived[index] = _receive(connection)
            if terminated[index] or truncated[index]:
                self._episodes[index] += 1
                _send(connection, ("reset", self._map(index)))
                finished.append(index)
            else:
                self._stack[index] = pushed(self._stack[index], gray_view(rgb))
                self.ego_state[index] = state
        for index in finished:
            self._start(index, *_receive(self._connections[index]))
        return StepResult(self._stack.copy(), reward, terminated, truncated)

    def close(self) -> None:
        for connection in self._connections:
            try:
                connection.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for process in self._processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


_WORKER_DIED = "a MetaDrive worker process died"
_WORKER_HINT = (
    "run again; if it keeps failing, `insight segment --game MetaDrive --frames 10` shows MetaDrive's own error"
)


def _send(connection, message) -> None:
    try:
        connection.send(message)
    except (BrokenPipeError, ConnectionResetError):
        raise InsightError(_WORKER_DIED, hint=_WORKER_HINT) from None


def _receive(connection):
    try:
        return connection.recv()
    except (EOFError, ConnectionResetError):
        raise InsightError(_WORKER_DIED, hint=_WORKER_HINT) from None

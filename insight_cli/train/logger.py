"""Training metrics to several outputs: TensorBoard scalars, a Parquet/CSV table, and a
learning-curve PNG at the end."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from insight_cli.files import atomic_output


class MetricsLogger:
    """Rows of scalars keyed by env step. Only rank 0 writes; other ranks keep nothing."""

    def __init__(self, run_dir: Path, enabled: bool = True, rows: list[dict] | None = None):
        self.run_dir = run_dir
        self.enabled = enabled
        self.rows: list[dict] = list(rows or [])
        self._tensorboard = None
        if enabled:
            from torch.utils.tensorboard import SummaryWriter

            self._tensorboard = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log(self, step: int, scalars: dict[str, float]) -> None:
        if not self.enabled:
            return
        self.rows.append({"step": step, **scalars})
        for name, value in scalars.items():
            self._tensorboard.add_scalar(name, value, step)

    def write_table(self) -> None:
        """metrics.parquet and metrics.csv, one row per logged step (missing values empty)."""
        if not self.enabled or not self.rows:
            return
        columns = sorted({key for row in self.rows for key in row} - {"step"})
        table = pa.Table.from_pylist([{"step": row["step"], **{c: row.get(c) for c in columns}} for row in self.rows])
        with atomic_output(self.run_dir / "metrics.parquet") as stream:
            pq.write_table(table, stream)
        with atomic_output(self.run_dir / "metrics.csv") as stream:
            pacsv.write_csv(table, stream)

    def learning_curve(self, path: Path) -> None:
        """Episode returns of the training (neural) actor and the evaluated EQL actor over env steps."""
        if not self.enabled:
            return
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(7, 4))
        for key, label in (
            ("train/episode_return", "acting actor (training episodes)"),
            ("eval/eql_return", "EQL actor (evaluation)"),
        ):
            points = [(row["step"], row[key]) for row in self.rows if row.get(key) is not None]
            if points:
                axis.plot(*zip(*points), label=label, marker="o" if key.startswith("eval") else None)
        axis.set_xlabel("env steps")
        axis.set_ylabel("episode return")
        if axis.lines:
            axis.legend()
        axis.grid(alpha=0.3)
        figure.tight_layout()
        with atomic_output(path) as stream:
            figure.savefig(stream, dpi=100, format="png")
        plt.close(figure)

    def close(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()

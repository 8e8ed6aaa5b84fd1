"""Reading Avalanche's metrics: an EvaluationPlugin's history in clproto's accuracy-matrix layout."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional


@dataclass(frozen=True)
class AvalancheMetrics:
    """Avalanche's accuracy/forgetting after each training step, in clproto's matrix layout."""

    accuracy_matrix: list  # A[t][j] from Top1_Acc_Exp (None above the diagonal)
    stream_accuracy: list  # Top1_Acc_Stream after each step
    experience_forgetting: list  # ExperienceForgetting of experience j at the last step (None for the last)
    stream_forgetting: Optional[float]  # StreamForgetting at the last step


def read_metrics(evaluator: Any, *, num_experiences: int, stream: str = "test_stream") -> AvalancheMetrics:
    """Read an EvaluationPlugin's history, assuming one ``eval(test_stream[: t + 1])`` per step ``t``."""
    history = evaluator.get_all_metrics()  # name -> (x positions, values)

    def values(prefix: str, suffix: str = "") -> list:
        hits = [v for k, v in history.items() if k.startswith(prefix) and k.endswith(suffix)]
        if len(hits) != 1:
            raise KeyError(f"expected one metric named {prefix}...{suffix}, found {len(hits)}: {sorted(history)}")
        return list(hits[0][1])

    T = num_experiences
    A: list = [[None] * T for _ in range(T)]
    for j in range(T):
        for offset, v in enumerate(values(f"Top1_Acc_Exp/eval_phase/{stream}/", f"/Exp{j:03d}")):
            A[j + offset][j] = float(v)
    forgetting = [values(f"ExperienceForgetting/eval_phase/{stream}/", f"/Exp{j:03d}")[-1] if j < T - 1 else None
                  for j in range(T)]
    stream_forgetting = values(f"StreamForgetting/eval_phase/{stream}")[-1] if T > 1 else None
    return AvalancheMetrics(
        accuracy_matrix=A,
        stream_accuracy=[float(v) for v in values(f"Top1_Acc_Stream/eval_phase/{stream}")],
        experience_forgetting=forgetting,
        stream_forgetting=stream_forgetting,
    )

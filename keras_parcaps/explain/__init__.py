"""Explain: what the capsules decided, as numbers and pictures.

Routing traces of every capsule layer, per-branch contributions of parallel
networks, the 8-orientation agreement of each prediction and the pose
perturbation of Sabour et al., recomputed from a trained model's weights
with `kp.ops` without touching its layers; and the figures to read them.
"""

from keras_parcaps.explain.capsule_explanation import CapsuleExplanation
from keras_parcaps.explain.dr_routing_trace import dr_routing_trace
from keras_parcaps.explain.em_routing_trace import em_routing_trace
from keras_parcaps.explain.explain_capsules import explain_capsules
from keras_parcaps.explain.explanation_panel import plot_explanation
from keras_parcaps.explain.explanation_summary import plot_explanation_summary
from keras_parcaps.explain.pose_perturbation import pose_perturbation
from keras_parcaps.explain.pose_perturbation_grid import plot_pose_perturbation
from keras_parcaps.explain.write_explanation import write_explanation

__all__ = [
    "CapsuleExplanation",
    "dr_routing_trace",
    "em_routing_trace",
    "explain_capsules",
    "plot_explanation",
    "plot_explanation_summary",
    "plot_pose_perturbation",
    "pose_perturbation",
    "write_explanation",
]

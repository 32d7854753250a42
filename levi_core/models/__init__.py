"""Small Flax models used by the synthetic experiments and the task-model side of LEVI."""

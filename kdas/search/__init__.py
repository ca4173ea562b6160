"""KD-guided differentiable architecture search (KDAS-ReID, Algorithm 1)."""

"""Converting torch <-> Flax and checking that both compute the same: outputs, gradients, steps, float64 referee."""
